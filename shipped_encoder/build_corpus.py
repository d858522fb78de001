"""Build the pretraining corpus: the public studies of ../shared/data/corpus, their Greengenes
13_8 97% OTU IDs mapped to sequences cut in silico to the V4 amplicon users sequence.

    python shipped_encoder/build_corpus.py --out build/corpus [--read-length 150] [--studies a,b]
        [--reference qiime-default-reference-0.1.3.tar.gz] [--max-samples 40]

For every OTU of the chosen studies, the Greengenes representative sequence (from the PyPI
package qiime-default-reference 0.1.3: the installed package, its sdist, or a folder) is cut
to the bases right after the 515F primer (GTGYCAGCMGCCGCGGTAA; where the whole primer is not
found, its 3' 12 bases), ``--read-length`` of them: the read a V4 ASV table holds.  OTUs whose
sequence lacks the primer or is too short after it are dropped with their reads (counted in
the manifest).  Samples with fewer than ``--min-depth`` kept reads, and American Gut's
extraction blanks, are left out.

Writes, deterministically (same inputs and options -> same files):
    <out>/<study>/table.biom      samples x OTUs kept (HDF5 BIOM; IDs = Greengenes IDs)
    <out>/<study>/metadata.tsv    the study's metadata rows of the kept samples
    <out>/sequences.fasta         every kept OTU -> its cut sequence
    <out>/tree.nwk                the Greengenes 97% tree cut down to the kept OTUs
    <out>/metadata.tsv            sample-id, study, subject of every kept sample
    <out>/manifest.json           options, studies (samples / OTUs / reads kept), checksums
Checksums: sha256 of the file bytes for text files; for tables, of their content (IDs and
counts: HDF5 stamps creation times into the bytes).  These are the inputs of multi-study
pretraining (`aam-engine pretrain --table a.biom --table b.biom ... --tree tree.nwk`).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import sys
import tarfile
from pathlib import Path

import numpy as np

FORWARD_515F = "GTGYCAGCMGCCGCGGTAA"
IUPAC = {"A": "A", "C": "C", "G": "G", "T": "T", "R": "[AG]", "Y": "[CT]", "S": "[GC]",
         "W": "[AT]", "K": "[GT]", "M": "[AC]", "B": "[CGT]", "D": "[AGT]", "H": "[ACT]",
         "V": "[ACG]", "N": "[ACGT]"}
REFERENCE = "qiime-default-reference==0.1.3"
FASTA = "gg_13_8_otus/rep_set/97_otus.fasta.gz"
TREE = "gg_13_8_otus/trees/97_otus.tree.gz"
# studies whose IDs are not Greengenes OTUs (no tree covers their sequences)
NOT_GG97 = ("multi-omics-10333",)
HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = HERE.parent.parent / "shared" / "data" / "corpus"


def primer_regex(primer: str) -> re.Pattern:
    return re.compile("".join(IUPAC[b] for b in primer))


def cut_v4(seq: str, read_length: int, full=primer_regex(FORWARD_515F),
           tail=primer_regex(FORWARD_515F[-12:])) -> str | None:
    """The ``read_length`` bases after the 515F primer, or None (primer absent / too short)."""
    m = full.search(seq) or tail.search(seq)
    if m is None or len(seq) - m.end() < read_length:
        return None
    return seq[m.end():m.end() + read_length]


# ---------------------------------------------------------------------------- reference
class Reference:
    """Greengenes 13_8 97% files from qiime-default-reference: the installed package, its sdist
    (.tar.gz) or a folder that holds gg_13_8_otus/."""

    def __init__(self, where: str | None):
        self.where = where
        if where is None:
            try:
                import qiime_default_reference as q
            except ImportError:
                raise SystemExit(
                    "The Greengenes reference is needed: `pip install qiime-default-reference=="
                    "0.1.3`, or `pip download --no-deps --no-binary :all: "
                    "qiime-default-reference==0.1.3` and pass the .tar.gz as --reference.")
            self.fasta_path, self.tree_path = q.get_reference_sequences(), q.get_reference_tree()
            self.kind = "package"
        elif where.endswith(".tar.gz"):
            self.kind = "sdist"
        else:
            self.kind = "folder"

    def open(self, member: str):
        """A text stream of a reference file (decompressed)."""
        if self.kind == "package":
            path = self.fasta_path if member == FASTA else self.tree_path
            return open(path)
        if self.kind == "sdist":
            tar = tarfile.open(self.where)
            name = next(n for n in tar.getnames() if n.endswith(member))
            return io.TextIOWrapper(gzip.GzipFile(fileobj=tar.extractfile(name)))
        path = Path(self.where) / member
        return (io.TextIOWrapper(gzip.open(path)) if path.exists()
                else open(str(path)[:-3]))

    def sequences(self, wanted: set[str]) -> dict[str, str]:
        out, name, buf = {}, None, []
        with self.open(FASTA) as fh:
            for line in fh:
                if line.startswith(">"):
                    if name in wanted:
                        out[name] = "".join(buf)
                    name, buf = line[1:].split()[0], []
                else:
                    buf.append(line.strip().upper())
            if name in wanted:
                out[name] = "".join(buf)
        return out

    def tree(self, tips: set[str]):
        import skbio
        with self.open(TREE) as fh:
            tree = skbio.TreeNode.read(fh, format="newick")
        tree = tree.shear(tips)
        tree.prune()
        return tree


# ---------------------------------------------------------------------------- helpers
def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def table_checksum(table) -> str:
    """sha256 of a biom.Table's content: sample IDs, OTU IDs, CSR counts."""
    h = hashlib.sha256()
    m = table.matrix_data.tocsr()
    m.sort_indices()
    for part in ("\n".join(table.ids()), "\n".join(table.ids(axis="observation"))):
        h.update(part.encode())
    for arr in (m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data.astype(np.float64)):
        h.update(arr.tobytes())
    return h.hexdigest()


def read_metadata(path: Path):
    import pandas as pd
    return pd.read_csv(path, sep="\t", skiprows=[1], dtype=str, keep_default_na=False,
                       index_col=0)


def write_metadata(df, types_row: str, path: Path):
    with open(path, "w", newline="") as fh:
        fh.write("\t".join([df.index.name] + list(df.columns)) + "\n")
        fh.write(types_row)
        for sid, row in df.iterrows():
            fh.write("\t".join([sid] + [str(v) for v in row]) + "\n")


def write_table(table, path: Path):
    import h5py
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as f:
        # the label the shipped encoder's corpus was written with (the folder was named
        # pretrained/ then): kept, so that the corpus files stay byte for byte the same
        table.to_hdf5(f, "q2-aam pretrained/build_corpus.py", compress=True)
    tmp.replace(path)


def pick_samples(ids, n: int, seed: int = 0):
    """At most n of ``ids``, drawn reproducibly, in their original order."""
    if not n or len(ids) <= n:
        return list(ids)
    keep = set(np.random.default_rng(seed).choice(len(ids), n, replace=False).tolist())
    return [s for i, s in enumerate(ids) if i in keep]


# ---------------------------------------------------------------------------- build
def build(corpus: Path, out: Path, reference: Reference, read_length: int = 150,
          studies=None, min_depth: int = 500, max_samples: int = 0, log=print) -> dict:
    import biom
    corpus = Path(corpus)
    available = sorted(p.name for p in corpus.iterdir() if (p / "table.biom").exists())
    studies = list(studies) if studies else [s for s in available if s not in NOT_GG97]
    unknown = [s for s in studies if s not in available]
    if unknown:
        raise SystemExit(f"not in {corpus}: {unknown}; studies there: {available}")
    not_gg = [s for s in studies if s in NOT_GG97]
    if not_gg:
        raise SystemExit(f"{not_gg}: feature IDs are sequences, not Greengenes OTUs; no "
                         "tree covers them, so they cannot join this corpus")
    out.mkdir(parents=True, exist_ok=True)
    tables = {s: biom.load_table(str(corpus / s / "table.biom")) for s in studies}
    otus = set().union(*(set(t.ids(axis="observation")) for t in tables.values()))
    log(f"{len(studies)} studies, {len(otus)} OTUs; reading Greengenes sequences")
    full = reference.sequences(otus)
    absent = otus - set(full)
    if absent:
        raise SystemExit(f"{len(absent)} OTU IDs are not in Greengenes 13_8 97%, e.g. "
                         f"{sorted(absent)[:3]}")
    cut = {o: cut_v4(full[o], read_length) for o in sorted(otus)}
    mapped = {o for o, s in cut.items() if s is not None}
    manifest = {"reference": REFERENCE, "region": "V4 after 515F " + FORWARD_515F,
                "read_length": read_length, "min_depth": min_depth,
                "max_samples_per_study": max_samples, "studies": {}, "files": {}}
    used, md_rows = set(), []
    for s in studies:
        t = tables[s]
        t = t.filter(lambda v, i, m: i in mapped, axis="observation", inplace=False)
        md = read_metadata(corpus / s / "metadata.tsv")
        with open(corpus / s / "metadata.tsv") as fh:
            fh.readline()
            types_row = fh.readline()
        depth = dict(zip(t.ids(), t.sum(axis="sample")))
        blank = set(md.index[md.get("body_habitat", "") == "blank"]) if "body_habitat" in md \
            else set()
        keep = [x for x in t.ids() if depth[x] >= min_depth and x not in blank]
        keep = pick_samples(keep, max_samples)
        reads_in = float(tables[s].filter(keep, axis="sample", inplace=False).sum())
        t = t.filter(keep, axis="sample", inplace=False)
        t = t.filter(lambda v, i, m: v.sum() > 0, axis="observation", inplace=False)
        (out / s).mkdir(exist_ok=True)
        write_table(t, out / s / "table.biom")
        write_metadata(md.loc[t.ids()], types_row, out / s / "metadata.tsv")
        used |= set(t.ids(axis="observation"))
        md_rows += [(x, s, md.at[x, "subject"]) for x in t.ids()]
        manifest["studies"][s] = {
            "samples_in": int(len(tables[s].ids())), "samples": int(len(t.ids())),
            "otus_in": int(len(tables[s].ids(axis="observation"))),
            "otus": int(len(t.ids(axis="observation"))),
            # reads of the kept samples, and those on OTUs whose sequence has the V4 cut
            "reads_of_kept_samples": reads_in, "reads_kept": float(t.sum()),
            "fraction_reads_kept": round(float(t.sum()) / reads_in, 6)}
        manifest["files"][f"{s}/table.biom"] = {"content_sha256": table_checksum(t)}
        log(f"  {s}: {len(t.ids())} samples, {len(t.ids(axis='observation'))} OTUs, "
            f"{float(t.sum()) / reads_in:.1%} of their reads")
    order = sorted(used)
    fasta = "".join(f">{o}\n{cut[o]}\n" for o in order).encode()
    (out / "sequences.fasta").write_bytes(fasta)
    log(f"reading the Greengenes tree and cutting it to {len(order)} OTUs")
    tree = reference.tree(set(order))
    buf = io.StringIO()
    tree.write(buf, format="newick")
    (out / "tree.nwk").write_text(buf.getvalue())
    with open(out / "metadata.tsv", "w") as fh:
        fh.write("sample-id\tstudy\tsubject\n#q2:types\tcategorical\tcategorical\n")
        fh.writelines(f"{a}\t{b}\t{c}\n" for a, b, c in md_rows)
    for name in ("sequences.fasta", "tree.nwk", "metadata.tsv"):
        manifest["files"][name] = {"sha256": sha256((out / name).read_bytes())}
    for s in studies:
        manifest["files"][f"{s}/metadata.tsv"] = {
            "sha256": sha256((out / s / "metadata.tsv").read_bytes())}
    manifest["otus"] = len(order)
    manifest["otus_without_primer_or_too_short"] = int(len(otus) - len(mapped))
    manifest["samples"] = len(md_rows)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="../shared/data/corpus")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--reference", help="qiime-default-reference sdist (.tar.gz) or folder; "
                                       "default: the installed package")
    p.add_argument("--read-length", type=int, default=150)
    p.add_argument("--studies", default="", help="comma-separated (default: every Greengenes "
                                                 "study)")
    p.add_argument("--min-depth", type=int, default=500)
    p.add_argument("--max-samples", type=int, default=0,
                   help="at most this many samples per study, drawn reproducibly (0 = all)")
    a = p.parse_args(argv)
    build(Path(a.corpus), Path(a.out), Reference(a.reference), a.read_length,
          [s for s in a.studies.split(",") if s], a.min_depth, a.max_samples,
          log=lambda m: print(m, file=sys.stderr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
