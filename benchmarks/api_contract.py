"""schemathesis against a running `hark serve`: every operation but the endless event
feeds, `--checks all`, with a key (so the checks of authentication run too).

    python -m benchmarks.api_contract [--examples 700]

Prints schemathesis's summary: how many requests were generated and, per check, the
failures. The target: no server error (not_a_server_error), no undocumented status code
(status_code_conformance) and no answer that breaks its schema or content type.
`positive_data_acceptance` also reports requests whose shape is valid but whose content
is refused on purpose (a file that is not audio, say); those are listed, not failures
of the contract.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import machine
from benchmarks.service import running_server

ENDLESS = ("/api/v1/events", "/api/v1/jobs/{job_id}/events")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=700,
                        help="examples per operation (about 32 operations)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp) / "hark",
                                                                  anonymous=False) as server:
        key = server.create_key()
        command = [sys.executable, "-m", "schemathesis.cli", "run",
                   f"{server.base}/openapi.json", "--checks", "all",
                   "-n", str(args.examples), "-H", f"Authorization: Bearer {key}",
                   "--max-failures", "1000", "--seed", "2026"]
        for path in ENDLESS:
            command += ["--exclude-path", path]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = done.stdout.splitlines()
        start = next((i for i, line in enumerate(lines) if "SUMMARY" in line), 0)
        print("\n".join(lines[start:]))


if __name__ == "__main__":
    main()
