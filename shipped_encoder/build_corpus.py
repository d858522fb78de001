"""Build the pretraining corpus: the public studies of ../shared/data/corpus, their Greengenes
13_8 97% OTU IDs mapped to sequences cut in silico to the V4 amplicon users sequence.

    python shipped_encoder/build_corpus.py --out build/corpus [--read-length 150] [--studies a,b]
        [--reference qiime-default-reference-0.1.3.tar.gz] [--max-samples 40]
        [--asv-study crc-udca2=PATH-TO-A-CLONE-OF-caporaso-lab/crc-udca2]

For every OTU of the chosen studies, the Greengenes representative sequence (from the PyPI
package qiime-default-reference 0.1.3: the installed package, its sdist, or a folder) is cut
to the bases right after the 515F primer (GTGYCAGCMGCCGCGGTAA; where the whole primer is not
found, its 3' 12 bases), ``--read-length`` of them: the read a V4 ASV table holds.  OTUs whose
sequence lacks the primer or is too short after it are dropped with their reads (counted in
the manifest).  Samples with fewer than ``--min-depth`` kept reads, and American Gut's
extraction blanks, are left out.

Real-ASV studies (``--asv-study NAME=GIT``, NAME one of ASV_STUDIES): DADA2 / Deblur tables
of public repositories, read from a clone (bare or not) at the commit pinned below, never
from a moving branch.  Their features are the study's own reads (IDs as the study gives them),
cut to ``--read-length``; each keeps its own rooted tree (``<out>/<study>/tree.nwk``), so its
UniFrac pairs stay within the study.  Only samples that the study's metadata lists with a
subject are kept (the submitted human samples, not controls).

Writes, deterministically (same inputs and options -> same files):
    <out>/<study>/table.biom      samples x OTUs kept (HDF5 BIOM; IDs = Greengenes IDs)
    <out>/<study>/metadata.tsv    the study's metadata rows of the kept samples
    <out>/sequences.fasta         every kept OTU -> its cut sequence
    <out>/tree.nwk                the Greengenes 97% tree cut down to the kept OTUs
    <out>/<asv-study>/tree.nwk    a real-ASV study's own tree, cut to its kept reads
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
import subprocess
import sys
import tarfile
import zipfile
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
# Real-ASV studies: where each one's files are (repository, commit, paths) and what they hold.
# Surveyed in shipped_encoder/README.md; none is a study that bench/ scores.
ASV_STUDIES = {
    "crc-udca2": dict(
        repository="caporaso-lab/crc-udca2", commit="32507d4a3aaf0b589fe8357aac12bdb0cfbc9771",
        table="data/table.qza", sequences="data/rep-seqs.qza", tree="data/rooted-tree.qza",
        metadata="sra/sra-submission-sheet.tsv", sample_column="sample_name",
        subject_column="host_subject_id", licence="BSD-3-Clause",
        description="human stool, ursodeoxycholic acid trial (before / after treatment), "
                    "DADA2 150 nt V4 (515F/806R)",
        citation="Pearson et al. 2019, Cancer Prev Res 12:(8) 543"),
}
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


def git_file(repo: Path, commit: str, path: str) -> bytes:
    """A file of a git repository (a clone, bare or not) at ``commit``."""
    try:
        return subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{path}"],
                              capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        err = getattr(e, "stderr", b"") or b""
        raise SystemExit(f"cannot read {path} at commit {commit[:12]} from {repo}: "
                         f"{err.decode().strip() or e}. Give a clone of the study's repository "
                         "that has this commit.")


def artifact_file(qza: bytes, name: str) -> bytes:
    """The payload file ``name`` (e.g. 'feature-table.biom') of a QIIME 2 artifact's bytes."""
    with zipfile.ZipFile(io.BytesIO(qza)) as z:
        member = next((m for m in z.namelist() if m.endswith("/data/" + name)), None)
        if member is None:
            raise SystemExit(f"the artifact holds no data/{name}: {z.namelist()[:5]}")
        return z.read(member)


# subject values that say "unknown": such samples are left out rather than made one subject
NO_SUBJECT = {"", "missing", "not applicable", "not collected", "not provided", "na", "n/a",
              "none", "unknown"}


def read_asv_study(repo: Path, spec: dict, read_length: int):
    """(the study's table, {feature: read cut to ``read_length``} of the reads at least that
    long, metadata indexed by sample with a 'subject' column (samples with a known subject),
    rooted tree) of a real-ASV study at its pinned commit."""
    import biom
    import h5py
    import pandas as pd
    import skbio
    get = lambda key: git_file(repo, spec["commit"], spec[key])
    with h5py.File(io.BytesIO(artifact_file(get("table"), "feature-table.biom")), "r") as f:
        table = biom.Table.from_hdf5(f)
    fasta = artifact_file(get("sequences"), "dna-sequences.fasta").decode()
    seqs = {r.metadata["id"]: str(r) for r in skbio.io.read(io.StringIO(fasta), "fasta")}
    missing = set(table.ids(axis="observation")) - set(seqs)
    if missing:
        raise SystemExit(f"{len(missing)} features of {spec['table']} have no sequence in "
                         f"{spec['sequences']}, e.g. {sorted(missing)[:3]}")
    cut = {f: seqs[f][:read_length] for f in table.ids(axis="observation")
           if len(seqs[f]) >= read_length}
    tree = skbio.TreeNode.read(io.StringIO(artifact_file(get("tree"), "tree.nwk").decode()),
                               format="newick")
    md = pd.read_csv(io.BytesIO(get("metadata")), sep="\t", dtype=str, keep_default_na=False)
    twice = md[spec["sample_column"]][md[spec["sample_column"]].duplicated()]
    if len(twice):
        raise SystemExit(f"{spec['metadata']} lists {len(twice)} samples twice, e.g. "
                         f"{list(twice[:3])}")
    md = md.set_index(spec["sample_column"])
    md.index.name = "sample-id"
    md.insert(0, "subject", md.pop(spec["subject_column"]).str.strip())
    md = md[~md["subject"].str.lower().isin(NO_SUBJECT)]
    return table, cut, md, tree


def pick_samples(ids, n: int, seed: int = 0):
    """At most n of ``ids``, drawn reproducibly, in their original order."""
    if not n or len(ids) <= n:
        return list(ids)
    keep = set(np.random.default_rng(seed).choice(len(ids), n, replace=False).tolist())
    return [s for i, s in enumerate(ids) if i in keep]


# ---------------------------------------------------------------------------- build
def build(corpus: Path, out: Path, reference: Reference, read_length: int = 150,
          studies=None, min_depth: int = 500, max_samples: int = 0, log=print,
          asv_studies=None, asv_specs=None) -> dict:
    """``asv_studies``: {name: clone of its repository} of real-ASV studies to add (their
    specs from ``asv_specs``, default ASV_STUDIES)."""
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
    asv_studies = dict(asv_studies or {})
    specs = ASV_STUDIES if asv_specs is None else asv_specs
    for s in asv_studies:      # before any work: a wrong name fails at once
        if s not in specs:
            raise SystemExit(f"unknown real-ASV study {s!r}; known: {sorted(specs)}")
        if s in studies:
            raise SystemExit(f"{s} is both a corpus study and a real-ASV study")
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
    asv_reads = {}
    for s, repo in sorted(asv_studies.items()):
        info, reads = add_asv_study(out, s, Path(repo), specs[s], read_length, min_depth,
                                    max_samples, manifest, md_rows, taken=set(cut) | set(asv_reads))
        asv_reads.update(reads)
        log(f"  {s} (real ASVs): {info['samples']} samples, {info['otus']} reads")
    fasta = "".join(f">{o}\n{cut[o]}\n" for o in order).encode()
    fasta += "".join(f">{o}\n{asv_reads[o]}\n" for o in sorted(asv_reads)).encode()
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
    for s in list(studies) + sorted(asv_studies):
        manifest["files"][f"{s}/metadata.tsv"] = {
            "sha256": sha256((out / s / "metadata.tsv").read_bytes())}
    manifest["otus"] = len(order) + len(asv_reads)
    manifest["otus_without_primer_or_too_short"] = int(len(otus) - len(mapped))
    manifest["samples"] = len(md_rows)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def add_asv_study(out: Path, s: str, repo: Path, spec: dict, read_length: int,
                  min_depth: int, max_samples: int, manifest: dict, md_rows: list,
                  taken: set = frozenset()):
    """Write one real-ASV study (table, metadata, its own tree) into the corpus; record it in
    the manifest and ``md_rows``.  ``taken``: the feature IDs of the studies before it.
    Returns (its manifest entry, {feature: read})."""
    table_in, reads, md, tree = read_asv_study(repo, spec, read_length)
    clash = set(table_in.ids(axis="observation")) & set(taken)
    if clash:
        raise SystemExit(f"{s}: {len(clash)} feature IDs are already another study's, e.g. "
                         f"{sorted(clash)[:3]}")
    clash = set(table_in.ids()) & {r[0] for r in md_rows}
    if clash:
        raise SystemExit(f"{s}: {len(clash)} sample IDs are already another study's, e.g. "
                         f"{sorted(clash)[:3]}")
    t = table_in.filter(lambda v, i, m: i in reads, axis="observation", inplace=False)
    depth = dict(zip(t.ids(), t.sum(axis="sample")))
    keep = pick_samples([x for x in t.ids() if x in md.index and depth[x] >= min_depth],
                        max_samples)
    if not keep:
        raise SystemExit(f"{s}: no sample has a subject in {spec['metadata']} and at least "
                         f"{min_depth} reads")
    reads_in = float(table_in.filter(keep, axis="sample", inplace=False).sum())
    t = t.filter(keep, axis="sample", inplace=False)
    t = t.filter(lambda v, i, m: v.sum() > 0, axis="observation", inplace=False)
    kept = set(t.ids(axis="observation"))
    tips = {n.name for n in tree.tips()}
    if kept - tips:
        raise SystemExit(f"{s}: {len(kept - tips)} reads are not tips of {spec['tree']}")
    tree = tree.shear(kept)
    tree.prune()
    (out / s).mkdir(exist_ok=True)
    write_table(t, out / s / "table.biom")
    write_metadata(md.loc[t.ids()], "#q2:types" + "\tcategorical" * md.shape[1] + "\n",
                   out / s / "metadata.tsv")
    buf = io.StringIO()
    tree.write(buf, format="newick")
    (out / s / "tree.nwk").write_text(buf.getvalue())
    md_rows += [(x, s, md.at[x, "subject"]) for x in t.ids()]
    info = manifest["studies"][s] = {
        "kind": "real ASVs, own tree", "tree": f"{s}/tree.nwk",
        "source": {k: spec[k] for k in ("repository", "commit", "table", "sequences", "tree",
                                         "metadata", "licence", "description", "citation")},
        "samples_in": int(len(table_in.ids())), "samples": int(len(t.ids())),
        "subjects": int(md.loc[t.ids(), "subject"].nunique()),
        "otus_in": int(len(table_in.ids(axis="observation"))), "otus": len(kept),
        "reads_shorter_than_read_length": int(len(table_in.ids(axis="observation"))
                                              - len(reads)),
        "reads_of_kept_samples": reads_in, "reads_kept": float(t.sum()),
        "fraction_reads_kept": round(float(t.sum()) / reads_in, 6)}
    manifest["files"][f"{s}/table.biom"] = {"content_sha256": table_checksum(t)}
    manifest["files"][f"{s}/tree.nwk"] = {"sha256": sha256((out / s / "tree.nwk").read_bytes())}
    return info, {f: reads[f] for f in sorted(kept)}


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
    p.add_argument("--asv-study", action="append", default=[], metavar="NAME=CLONE",
                   help=f"add a real-ASV study ({', '.join(ASV_STUDIES)}) from a clone of its "
                        "repository (read at the pinned commit)")
    a = p.parse_args(argv)
    if any("=" not in kv for kv in a.asv_study):
        p.error("--asv-study takes NAME=CLONE, e.g. crc-udca2=../crc-udca2")
    asv = dict(kv.split("=", 1) for kv in a.asv_study)
    build(Path(a.corpus), Path(a.out), Reference(a.reference), a.read_length,
          [s for s in a.studies.split(",") if s], a.min_depth, a.max_samples,
          log=lambda m: print(m, file=sys.stderr), asv_studies=asv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
