# Packaging: the onefile binary, the Debian package and their tests (issue 4, docs/packaging.md).
#
#   make binary    dist/bitdust, rebuilt only when the sources, the spec or the pins change
#   make deb       dist/bitdust_<version>_amd64.deb from debian/, reusing dist/bitdust and its
#                  bash completion
#   make repo      dist/apt: a signed APT repository of that .deb, to publish as static files
#   make test-deb  the packaging tests (frozen binary, units, lintian, install into Debian 12)

.PHONY: binary deb repo test-deb

PYINSTALLER := $(VENV)/bin/pyinstaller
# Everything that ends up in the binary: code and data of the package, the entry point, the spec.
BINARY_INPUTS := $(shell find bitdust -type f -not -path '*/__pycache__/*' -not -name '*.pyc') \
	bitdust.spec $(wildcard packaging/pyinstaller/*.py) requirements/runtime.txt \
	$(wildcard packaging/nginx/bitdust-identity.conf)

dist/bitdust: $(STAMP) $(BINARY_INPUTS)
	$(PYINSTALLER) --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller bitdust.spec
	@touch $@
	@dist/bitdust --version

binary: dist/bitdust

# Bash completion, written by shtab from the CLI's own parser (packaging/completion.py) in the
# virtualenv, where shtab is; the package ships it beside the binary.
COMPLETION := dist/bitdust.bash-completion
$(COMPLETION): $(STAMP) $(BINARY_INPUTS) packaging/completion.py
	@mkdir -p dist
	$(PY) packaging/completion.py bash > $@.tmp && mv $@.tmp $@

DEB_VERSION := $(shell dpkg-parsechangelog -l debian/changelog -S Version 2>/dev/null)
DEB_FILE := dist/bitdust_$(DEB_VERSION)_amd64.deb
DEB_INPUTS := $(shell find debian systemd packaging bitdust/roles -type f -not -name '*.pyc' \
	-not -path 'debian/bitdust/*' -not -path 'debian/.debhelper/*' -not -path 'debian/generated/*')

$(DEB_FILE): dist/bitdust $(COMPLETION) $(DEB_INPUTS)
	packaging/build-deb.sh

deb: $(DEB_FILE)

# The signing key is made in REPO_GNUPGHOME on first use and never leaves it (dist/apt carries the
# public key only); an operator points REPO_GNUPGHOME/REPO_KEY at their own key, and REPO_DEBS at
# every version to publish.
REPO_GNUPGHOME ?= build/apt-signing
REPO_KEY ?=
REPO_DEBS ?= $(DEB_FILE)
dist/apt/dists/stable/InRelease: $(REPO_DEBS) packaging/build-repo.sh
	packaging/build-repo.sh --out dist/apt --gnupghome $(REPO_GNUPGHOME) \
		$(if $(REPO_KEY),--key $(REPO_KEY)) $(REPO_DEBS)

repo: dist/apt/dists/stable/InRelease

test-deb: venv deps binary deb repo
	$(PY) -m pytest -m packaging tests/packaging $(PYTEST_ARGS)
