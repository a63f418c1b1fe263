import os
from functools import cache

import pytest
import torch

import halluscope
from halluscope import World
from tiny_vlms import BUILDERS, FAMILIES

# NLTK's data (about 40 MB) is not in the repository: the tests that need it run where nltk finds it
# (NLTK_DATA, or where `nltk.downloader` puts it) and skip elsewhere, saying how to get it.
NLTK_RESOURCES = {
    "punkt_tab": "tokenizers/punkt_tab/english/",
    "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng/",
    "wordnet": "corpora/wordnet",
}
NLTK_HOWTO = ("get it with `python -m nltk.downloader punkt_tab averaged_perceptron_tagger_eng wordnet` "
              "or set NLTK_DATA to a folder that holds it")


@cache
def missing_nltk_data() -> str | None:
    """Why the NLTK tests cannot run here, or None when every resource they need is found."""
    try:
        import nltk
    except ImportError:
        return "nltk is not installed: pip install -e '.[test]'"
    paths = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p] + list(nltk.data.path)
    missing = []
    for name, resource in NLTK_RESOURCES.items():
        try:
            nltk.data.find(resource, paths=paths)
        except LookupError:
            missing.append(name)
    if missing:
        return f"needs NLTK data ({', '.join(missing)} not found); {NLTK_HOWTO}"
    return None


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (`pytestmark = pytest.mark.usefixtures("one_thread")`): the micro
    models run fastest on one, and spin far less on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def micro_folder(micro, tmp_path_factory):
    """The module's `micro` adapter saved as a model folder, for the command line."""
    folder = tmp_path_factory.mktemp("micro-model")
    micro.model.save_pretrained(folder)
    micro.processor.save_pretrained(folder)
    return folder


@pytest.fixture
def nltk_data():
    """Skips the test unless NLTK and its data are here (parity-mode CHAIR and AMBER)."""
    reason = missing_nltk_data()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def world():
    """The default world (seed 0)."""
    return World(seed=0)


def _tiny_vlm(builders, name, tmp_path_factory):
    """(adapter, facts) of the tiny random model of family `name`, built, saved and loaded back."""
    # Models this small run fastest on one thread, and spin far less on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp(name)
    try:
        facts = builders[name](folder)
    except ImportError as e:  # a processor's own dependency (SmolVLM's needs num2words)
        torch.set_num_threads(threads)
        pytest.skip(f"{name}: {e}")
    adapter = halluscope.load_model(str(folder), device="cpu")
    yield adapter, facts
    torch.set_num_threads(threads)
    if facts.get("registered"):  # the config class whose stand-in processor was registered with AutoProcessor
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

        PROCESSOR_MAPPING._extra_content.pop(facts["registered"], None)


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def vlm(request, tmp_path_factory):
    """(adapter, facts) for LLaVA and Qwen2-VL, where the engine's own tests run; once per module."""
    yield from _tiny_vlm(BUILDERS, request.param, tmp_path_factory)


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    """(adapter, facts) for every tested family (tests/tiny_vlms.py FAMILIES); once per module."""
    yield from _tiny_vlm(FAMILIES, request.param, tmp_path_factory)
