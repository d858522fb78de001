"""q2-aam: Attention All Microbes as a QIIME 2 plugin, on a plain PyTorch engine.

Install requirements are deliberately loose: inside a QIIME 2 environment numpy, pandas,
scipy, scikit-bio, biom-format and h5py belong to QIIME 2 and must never be replaced by pip.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

version = re.search(r'__version__ = "([^"]+)"',
                    Path(__file__).with_name("aam_engine").joinpath("__init__.py").read_text()).group(1)

setup(
    name="q2-aam",
    version=version,
    description="AAM (Attention All Microbes) transformer for QIIME 2: pretrain on UniFrac, "
                "fine-tune to predict sample metadata from ASV sequences.",
    license="BSD-3-Clause",
    packages=find_packages(include=["aam_engine", "aam_engine.*", "q2_aam", "q2_aam.*"]),
    python_requires=">=3.10",
    # torch is required but never pinned here: conda users get it from the pytorch channel,
    # Debian users from ci/setup.sh (the CPU wheel).  Ranges stay open so pip never swaps out
    # the scientific stack QIIME 2 was built against.
    # scikit-learn fits the stack's learners (QIIME 2 has it through q2-sample-classifier);
    # prediction needs none of it
    install_requires=["torch>=2.1", "numpy", "scipy", "scikit-learn", "safetensors", "tqdm"],
    extras_require={
        # the engine reads BIOM/FASTA/trees with the field's own libraries
        "data": ["biom-format", "scikit-bio", "h5py", "unifrac"],
        "test": ["pytest", "hypothesis"],
    },
    package_data={
        "q2_aam": ["citations.bib", "assets/summarize/*.html"],
        # the shipped encoder: weights, configuration, history and model card
        "aam_engine": ["pretrained/default/*"],
    },
    entry_points={
        "qiime2.plugins": ["q2-aam = q2_aam.plugin_setup:plugin"],
        "console_scripts": ["aam-engine = aam_engine.cli:main"],
    },
    zip_safe=False,
)
