import io

import pandas as pd
import qiime2

from aam_engine.api import ModelBundle, history_tsv, read_model_dir, write_model_files

from ._formats import AAMHistoryFormat, AAMModelDirFmt
from .plugin_setup import plugin


@plugin.register_transformer
def _1(bundle: ModelBundle) -> AAMModelDirFmt:
    ff = AAMModelDirFmt()
    write_model_files(bundle, str(ff.path))
    return ff


@plugin.register_transformer
def _2(ff: AAMModelDirFmt) -> ModelBundle:
    # safetensors + JSON only: loading a stranger's model never runs code
    return read_model_dir(str(ff.path))


@plugin.register_transformer
def _3(df: pd.DataFrame) -> AAMHistoryFormat:
    ff = AAMHistoryFormat()
    with ff.open() as fh:
        fh.write(history_tsv(df.reset_index().to_dict("records") if df.index.name == "epoch"
                             else df.to_dict("records")))
    return ff


@plugin.register_transformer
def _4(ff: AAMHistoryFormat) -> pd.DataFrame:
    with ff.open() as fh:
        return pd.read_csv(io.StringIO(fh.read()), sep="\t", index_col="epoch")


@plugin.register_transformer
def _5(ff: AAMHistoryFormat) -> qiime2.Metadata:
    df = _4(ff)
    df.index = pd.Index([f"epoch-{i}" for i in df.index], name="id")
    return qiime2.Metadata(df)
