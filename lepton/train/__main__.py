"""``python -m lepton.train …`` (and ``torchrun -m lepton.train …``): the same as ``lepton train …``."""

import sys

from lepton.cli import main

sys.argv = ["lepton", "train", *sys.argv[1:]]
main()
