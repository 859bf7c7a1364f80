"""``python -m benchmarks.hl7_parse`` runs and reports both readers (a smoke test: no speed
is asserted here; the benchmark prints the numbers)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_parse_benchmark_prints_both_rates() -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks.hl7_parse", "--seconds", "0.1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    lines = result.stdout.splitlines()
    assert "reader msg/s" in lines[0] and "python-hl7 msg/s" in lines[0]
    rows = [line for line in lines if line.startswith(("4-OBX", "simulator"))]
    assert len(rows) == 2
    for row in rows:
        rates = re.findall(r"(\d[\d,]*) \(\s*(\d[\d,]*)\)", row)  # best (whole run), twice
        assert len(rates) == 2 and all(int(n.replace(",", "")) > 0 for pair in rates for n in pair)
        assert re.search(r"\d+\.\dx$", row)
    assert re.match(r"(PASS|FAIL): 4-OBX ORU\^R01 decodes in \d+\.\d us", lines[-1])
