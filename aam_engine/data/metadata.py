"""Sample metadata as QIIME 2 writes it (TSV, first column the sample IDs, '#' rows such as
'#q2:types' skipped), read one way everywhere: the engine CLI, the benchmarks and the corpus
build.  IDs and values stay strings ('2538.1000101' is not a number); a missing value is None."""
from __future__ import annotations

import csv

# cells that mean "no value": empty, NA / nan spellings, and the INSDC / Qiita missing terms
MISSING = {"", "NA", "N/A", "NaN", "nan", "None", "none"}
MISSING_PREFIXES = ("missing", "not applicable", "not provided", "not collected",
                    "restricted access")


def missing(value) -> bool:
    """Whether a metadata cell holds no value."""
    if value is None:
        return True
    v = str(value).strip()
    return v in MISSING or v.lower().startswith(MISSING_PREFIXES)


def read_metadata(path) -> dict[str, dict[str, str | None]]:
    """{column: {sample_id: value or None}} from a QIIME 2 style TSV, columns and samples in
    file order."""
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh, delimiter="\t") if r and not r[0].startswith("#")]
    if not rows:
        raise ValueError(f"{path} is empty")
    header, body = rows[0], rows[1:]
    cols = {c: {} for c in header[1:]}
    for r in body:
        for c, v in zip(header[1:], r[1:]):
            cols[c][r[0]] = None if missing(v) else v
    return cols
