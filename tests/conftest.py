import pytest
import torch

from langprune.model.families import FAMILIES
from tests.tiny import save_tiny

torch.set_num_threads(2)


@pytest.fixture(scope="session", params=list(FAMILIES))
def tiny_dir(request, tmp_path_factory):
    """A saved tiny random model directory of each family."""
    return save_tiny(request.param, tmp_path_factory.mktemp("tiny") / request.param)


@pytest.fixture(scope="session")
def gemma():
    """The real default model, loaded once for the session (prepared by `make setup`)."""
    from langprune.model.load import load

    return load("gemma3-270m")
