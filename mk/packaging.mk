# Packaging targets (binary, deb, test-deb); owned by the packaging work, see issue 4.
.PHONY: binary deb
binary: venv
	@echo "binary: not built yet"
deb: binary
	@echo "deb: not built yet"
