#!/usr/bin/python3
"""Write the man page bitdust(1) from the built program's own --help, at package build time.

Usage: packaging/manpage.py BINARY VERSION > bitdust.1

The commands and their options are read from `BINARY --help` and `BINARY COMMAND --help`, so the
page cannot drift from the CLI; the prose around them (files, environment, exit status, examples)
is written here. Runs with the build host's python3 and the standard library only; it never
imports bitdust.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HELP_TIMEOUT = 60

DESCRIPTION = """\
.B bitdust
is one node of a private, decentralised, end\\-to\\-end encrypted backup network, compatible in
its settings and commands with BitDust.
A host runs one or more
.IR instances :
either the all\\-in\\-one
.B default
instance, or role instances side by side
.RB ( dht\\-seed ,
.BR identity\\-server ,
.BR proxy\\-router ,
.BR supplier ),
each a systemd unit
.BR bitdust@ INSTANCE .service .
.PP
.B bitdust run
runs the node in the foreground, as systemd starts it; the other commands either act on the
configuration files directly
.RB ( set ,
.BR get ,
.BR check\\-config )
or talk to the running node through its local REST API, authenticated with the secret in the
instance's runtime directory.
.PP
Settings are read in layers, later wins: built\\-in defaults, the role preset, the network file,
the instance's configuration file, settings written through the API, environment variables,
then command\\-line options
.RB ( "run \\-o KEY=VALUE" ).
.B bitdust set list
shows every value with the layer it came from.
"""

FILES = [
    (
        "/etc/bitdust/\\fIINSTANCE\\fR.conf",
        "Settings of one instance, one `key = value` per line; every shipped line is commented "
        "out so that the role preset applies. Edited by bitdust set.",
    ),
    (
        "/etc/bitdust/network.json",
        "The private network's parameters, in BitDust's default_network.json shape: DHT seeds "
        "(known_nodes) and identity servers (known_servers).",
    ),
    ("/usr/share/bitdust/roles/\\fIROLE\\fR.conf", "Role presets; not to be edited."),
    ("/var/lib/bitdust/\\fIINSTANCE\\fR/", "State of one instance (keys, DHT, stored data)."),
    (
        "/run/bitdust/\\fIINSTANCE\\fR/",
        "Runtime files: bitdust.pid, the API secret api.secret and the API socket api.sock.",
    ),
    (
        "/usr/share/bitdust/nginx/bitdust\\-identity.conf",
        "nginx site template for an identity server; bitdust identity-server nginx-config "
        "prints it filled in.",
    ),
    (
        "/usr/share/bash\\-completion/completions/bitdust",
        "Bash completion of commands, options and choices, generated from the program's parser.",
    ),
    (
        "/lib/systemd/system/bitdust@.service, bitdust.service",
        "The instance template unit and the parent unit that reloads, restarts and stops every "
        "instance.",
    ),
]

ENVIRONMENT = [
    ("BITDUST_INSTANCE", "Instance to act on when --instance is not given (default: default)."),
    ("BITDUST_CONFIG_DIR", "Configuration directory (default: /etc/bitdust)."),
    ("BITDUST_STATE_DIR", "Parent of the state directories (default: /var/lib/bitdust)."),
    ("BITDUST_RUNTIME_DIR", "Parent of the runtime directories (default: /run/bitdust)."),
    (
        "STATE_DIRECTORY, RUNTIME_DIRECTORY",
        "Set by systemd; when present they are the instance's state and runtime directories.",
    ),
    (
        "BITDUST_\\fIKEY\\fR",
        "Any setting, its key upper-cased with every other character an underscore, e.g. "
        "BITDUST_SERVICES_SUPPLIER_DONATED_SPACE.",
    ),
    ("NOTIFY_SOCKET, WATCHDOG_USEC", "systemd notification socket and watchdog interval."),
]

# bitdust.errors.ExitStatus, in words (a test checks that the two list the same codes).
EXIT_STATUS = [
    ("0", "Success."),
    (
        "1",
        "Failure: the node failed (systemd restarts it), could not be reached, or refused the "
        "request.",
    ),
    (
        "2",
        "Invalid configuration or arguments: a bad value, a file that cannot be used, a missing "
        "configuration directory. The reasons are printed; systemd does not restart the node.",
    ),
    (
        "65",
        "A file the node keeps is of a newer or unreadable format: upgrade bitdust or move the "
        "file away. systemd does not restart the node.",
    ),
    ("70", "Internal error (a bug); the one-line message names it."),
    ("130", "Interrupted (Ctrl-C)."),
]

EXAMPLES = """\
.EX
sudo systemctl enable \\-\\-now bitdust@supplier
sudo bitdust \\-\\-instance supplier set services/supplier/donated\\-space "50 GB"
sudo systemctl reload bitdust@supplier
bitdust \\-\\-instance supplier states
bitdust \\-\\-instance dht\\-seed \\-\\-json network status \\-\\-dht
sudo bitdust unset logs/level
sudo bitdust \\-\\-instance supplier2 set node/role supplier
bitdust \\-\\-instance supplier2 check\\-config
.EE
.PP
A second instance of a role (here a second supplier) also needs its own ports.
What
.B bitdust set
writes is the value in force, or nothing is written and the overriding layer is named.
The REST API describes itself at
.B /openapi.json
and serves Prometheus metrics at
.BR /metrics ;
.B interface/metrics/port
opens a listener serving only the metrics.
"""


def run_help(binary: str, *args: str) -> str:
    env = {
        "PATH": "/usr/bin:/bin",
        "COLUMNS": "100",
        "LANG": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/nonexistent"),
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
    }
    result = subprocess.run(
        [binary, *args, "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=HELP_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"manpage.py: {binary} {' '.join(args)} --help failed: {result.stderr}")
    return result.stdout


def parse_help(text: str) -> tuple[str, list[str], list[tuple[str, list[tuple[str, str]]]]]:
    """argparse output as (usage, description paragraphs, [(section, [(term, help)])])."""
    lines = text.splitlines()
    index = 0
    usage_lines = []
    while index < len(lines) and lines[index].strip():
        usage_lines.append(lines[index].strip())
        index += 1
    usage = " ".join(usage_lines).removeprefix("usage:").strip()
    description: list[str] = []
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    current: list[tuple[str, str]] | None = None
    help_column = None
    for line in lines[index:]:
        if not line.strip():
            continue
        if not line.startswith(" ") and line.endswith(":"):
            current = []
            sections.append((line[:-1], current))
            help_column = None
            continue
        if current is None:
            description.append(line.strip())
            continue
        indent = len(line) - len(line.lstrip())
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if help_column is not None and indent >= help_column and current:
            term, help_ = current[-1]
            current[-1] = (term, f"{help_} {line.strip()}".strip())
            continue
        if len(parts) == 2:
            help_column = indent + len(line.strip()) - len(parts[1])
            current.append((parts[0], parts[1]))
        else:
            current.append((parts[0], ""))
    return usage, description, sections


def roff(text: str) -> str:
    """Escape plain text for a roff line."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def options_of(sections: list[tuple[str, list[tuple[str, str]]]]) -> list[tuple[str, str]]:
    entries = []
    for _title, items in sections:
        for term, help_ in items:
            if term.startswith("-h, --help") or not (help_ or term.startswith("-")):
                continue
            entries.append((term, help_))
    return entries


def command_names(sections: list[tuple[str, list[tuple[str, str]]]]) -> list[tuple[str, str]]:
    for title, items in sections:
        if title == "positional arguments":
            return [(term, help_) for term, help_ in items if help_]
    return []


def render(binary: str, version: str) -> str:
    _usage, _description, sections = parse_help(run_help(binary))
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    date = time.strftime("%B %Y", time.gmtime(epoch))
    out = [
        f'.TH BITDUST 1 "{date}" "bitdust {roff(version)}" "User Commands"',
        ".SH NAME",
        "bitdust \\- node of a private, decentralised, encrypted backup network",
        ".SH SYNOPSIS",
        ".B bitdust",
        "[\\fB\\-\\-instance\\fR \\fINAME\\fR] \\fICOMMAND\\fR [\\fIARGUMENTS\\fR]",
        ".br",
        ".B bitdust",
        "\\fB\\-\\-version\\fR | \\fB\\-\\-help\\fR",
        ".SH DESCRIPTION",
        DESCRIPTION.rstrip("\n"),
        ".SH OPTIONS",
    ]
    for term, help_ in options_of([s for s in sections if s[0] == "options"]):
        out += [".TP", f"\\fB{roff(term)}\\fR", roff(help_)]
    out.append(".SH COMMANDS")
    commands = command_names(sections)
    with ThreadPoolExecutor(max_workers=4) as pool:
        helps = list(pool.map(lambda entry: run_help(binary, entry[0].split()[0]), commands))
    for (term, help_), sub_help_text in zip(commands, helps, strict=True):
        sub_usage, _sub_description, sub_sections = parse_help(sub_help_text)
        sub_usage = sub_usage.replace(" [-h]", "")
        out += [".TP", f"\\fB{roff(term)}\\fR", roff(help_)]
        out += [".RS", ".PP", f"Usage: \\fB{roff(sub_usage)}\\fR"]
        for sub_term, sub_help in options_of(sub_sections):
            out += [".TP", f"\\fB{roff(sub_term)}\\fR", roff(sub_help) or "\\&"]
        out.append(".RE")
    out.append(".SH FILES")
    for path, text in FILES:
        out += [".TP", f"\\fI{path}\\fR", roff(text)]
    out.append(".SH ENVIRONMENT")
    for name, text in ENVIRONMENT:
        out += [".TP", f"\\fB{name}\\fR", roff(text)]
    out.append(".SH EXIT STATUS")
    for code, text in EXIT_STATUS:
        out += [".TP", f"\\fB{code}\\fR", roff(text)]
    out += [".SH EXAMPLES", EXAMPLES.rstrip("\n")]
    out += [
        ".SH SEE ALSO",
        ".BR systemctl (1),",
        ".BR journalctl (1),",
        ".BR nginx (8),",
        ".I /usr/share/doc/bitdust/README.Debian",
    ]
    return "\n".join(out) + "\n"


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    sys.stdout.write(render(sys.argv[1], sys.argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
