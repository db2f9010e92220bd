"""Write bitdust's shell completion from the CLI's own parser, with shtab, at package build time.

Usage: .venv/bin/python packaging/completion.py [bash|zsh] > bitdust

The commands, options and choices come from :func:`bitdust.cli.build_parser`, so completion
cannot drift from the CLI. Run it in the build virtualenv (shtab is a build dependency, pinned
in requirements/dev.txt); the bash script is installed as
/usr/share/bash-completion/completions/bitdust.
"""

from __future__ import annotations

import sys
from pathlib import Path

import shtab

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the source tree's bitdust

from bitdust.cli import SETTING_KEYS_COMPLETION, build_parser
from bitdust.config import OPTIONS


def render(shell: str = "bash") -> str:
    """The completion script for ``shell``; settings keys complete from the registry."""
    keys = " ".join(sorted(OPTIONS))
    function = SETTING_KEYS_COMPLETION["bash"]
    preamble = {"bash": f'{function}() {{\n  compgen -W "{keys}" -- "$1"\n}}\n'}
    script = shtab.complete(build_parser(), shell=shell, preamble=preamble)
    if shell == "bash":
        script += SKIP_INSTANCE
    return script


# shtab takes every word that names a subcommand for one, also the value of an option before it:
# `bitdust --instance supplier <TAB>` would complete the `supplier` command's arguments. The
# function bash calls drops `--instance NAME` from the words before shtab's reads them.
SKIP_INSTANCE = """
_bitdust() {
  local words=() cword=$COMP_CWORD i
  for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
    if [[ ${COMP_WORDS[i]} == --instance ]] && ((i + 1 < COMP_CWORD)); then
      ((i++, cword -= 2))
      continue
    fi
    words+=("${COMP_WORDS[i]}")
  done
  local COMP_WORDS=("${words[@]}") COMP_CWORD=$cword
  _shtab_bitdust "$@"
}
complete -o bashdefault -F _bitdust bitdust
"""


def main(argv: list[str]) -> int:
    if len(argv) > 1 or (argv and argv[0] not in shtab.SUPPORTED_SHELLS):
        print(f"usage: completion.py [{'|'.join(shtab.SUPPORTED_SHELLS)}]", file=sys.stderr)
        return 2
    sys.stdout.write(render(*argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
