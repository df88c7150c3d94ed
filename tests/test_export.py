"""`trainer.hf` and `corpus export`: our checkpoint as a Hugging Face GPT-2 folder, read by the real
`transformers` (a test-only extra, offline: nothing is downloaded) and read back by `import_hf`."""

import json
import os
import shutil
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach for the hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import AutoTokenizer, GPT2LMHeadModel  # noqa: E402

from schemas.tokens import EOT_TOKEN  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.test_generate import corpus, one_line_error, shakespeare, write_checkpoint  # noqa: E402
from trainer.generate import generate_text, load  # noqa: E402
from trainer.hf import CheckpointError, export_hf, import_hf, read_checkpoint  # noqa: E402
from trainer.model import GPT, GPTConfig  # noqa: E402

FILES = ["config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
         "tokenizer.json", "tokenizer_config.json"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "gpt2"
    written = export_hf(str(checkpoint), str(out))
    assert sorted(os.path.basename(p) for p in written) == FILES
    return out


def hf_model(folder):
    model, info = GPT2LMHeadModel.from_pretrained(str(folder), local_files_only=True,
                                                  output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched weights
    return model.eval()


def sample_ids(checkpoint, length=32):
    _, tokenizer = load(str(checkpoint))
    return torch.tensor([tokenizer.encode(shakespeare()[5000:6000]).ids[:length]])


@pytest.fixture(scope="module")
def loud(checkpoint, tmp_path_factory):
    """The trained checkpoint with every weight redrawn from N(0, 1): GELU, LayerNorm and softmax
    far from their linear ranges, where a near miss (tanh GELU, another epsilon) shows."""
    folder = tmp_path_factory.mktemp("loud")
    ckpt = read_checkpoint(str(checkpoint))
    gen = torch.Generator().manual_seed(0)
    ckpt["model"] = {k: torch.randn(v.shape, generator=gen) for k, v in ckpt["model"].items()}
    ckpt["model"]["head.weight"] = ckpt["model"]["tok_emb.weight"]
    torch.save(ckpt, folder / "ckpt.pt")
    shutil.copyfile(checkpoint.parent / "tokenizer.json", folder / "tokenizer.json")
    export_hf(str(folder / "ckpt.pt"), str(folder / "gpt2"))
    return folder / "ckpt.pt"


@pytest.mark.parametrize("which", ["trained", "loud"])
def test_transformers_computes_our_logits(which, checkpoint, exported, loud):
    source, folder = (checkpoint, exported) if which == "trained" else (loud, loud.parent / "gpt2")
    ours, _ = load(str(source))
    theirs = hf_model(folder)
    x = sample_ids(checkpoint)
    with torch.no_grad():
        expected, _ = ours(x)
        got = theirs(x).logits
    assert got.shape == expected.shape == (1, 32, ours.config.vocab_size)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    assert expected.std() > 0.1  # the comparison is not between near-zeros
    config = json.loads((folder / "config.json").read_text())
    assert config["activation_function"] == "gelu" and config["n_positions"] == 32
    assert config["eos_token_id"] == config["bos_token_id"] == 0  # <|endoftext|>, trained first


def test_transformers_greedy_generation_matches_ours(checkpoint, exported):
    ours, tokenizer = load(str(checkpoint))
    theirs = hf_model(exported)
    prompt = torch.tensor([tokenizer.encode("ROMEO:").ids])
    with torch.no_grad():
        hf_out = theirs.generate(prompt, max_new_tokens=12, do_sample=False,
                                 pad_token_id=theirs.config.eos_token_id)
    mine = generate_text(ours, tokenizer, "ROMEO:", max_new_tokens=12, temperature=0)
    assert tokenizer.decode(hf_out[0].tolist(), skip_special_tokens=True) == mine


def test_auto_tokenizer_encodes_like_ours(checkpoint, exported):
    _, ours = load(str(checkpoint))
    theirs = AutoTokenizer.from_pretrained(str(exported), local_files_only=True)
    assert theirs.eos_token == theirs.bos_token == EOT_TOKEN
    assert theirs.eos_token_id == ours.token_to_id(EOT_TOKEN)
    for text in [shakespeare()[:700], "  Spaces,\ttabs\nand ünïcödé — 漢字 🙂",
                 f"one document{EOT_TOKEN}the next"]:
        ids = ours.encode(text).ids
        assert theirs(text)["input_ids"] == ids
        assert theirs.decode(ids, skip_special_tokens=True) == ours.decode(ids)
    assert (exported / "tokenizer.json").read_bytes() == \
        (checkpoint.parent / "tokenizer.json").read_bytes()  # a copy: same sha256 as the dataset's


def test_import_hf_gives_back_identical_tensors(checkpoint, exported):
    saved = read_checkpoint(str(checkpoint))
    config, state = import_hf(str(exported))
    assert config == saved["model_config"]
    assert set(state) == set(saved["model"])
    for name, tensor in saved["model"].items():
        assert torch.equal(state[name], tensor), name
    model = GPT(GPTConfig(**config))
    model.load_state_dict(state)  # strict: fits our model as it is
    assert model.head.weight.data_ptr() == model.tok_emb.weight.data_ptr()  # still tied
    # the exported folder also serves as a checkpoint: same text for the same seed
    a = generate_text(*load(str(checkpoint)), "KING", max_new_tokens=20, seed=7)
    b = generate_text(*load(str(exported)), "KING", max_new_tokens=20, seed=7)
    assert a == b and len(a) > 10


def test_a_model_without_biases_exports_with_zero_biases(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "run", steps=5, bias=False)
    export_hf(str(checkpoint), str(tmp_path / "hf"))
    ours, _ = load(str(checkpoint))
    x = sample_ids(checkpoint, 16)
    with torch.no_grad():
        assert torch.allclose(hf_model(tmp_path / "hf")(x).logits, ours(x)[0], atol=1e-4)
    config, state = import_hf(str(tmp_path / "hf"))
    assert config["bias"] is True and not state["blocks.0.attn.qkv.bias"].any()


def test_what_gpt2_config_our_model_cannot_compute_is_refused(exported, tmp_path):
    for change, needle in [({"activation_function": "gelu_new"}, "activation_function"),
                           ({"tie_word_embeddings": False}, "tie_word_embeddings"),
                           ({"n_inner": 100}, "n_inner"),
                           ({"model_type": "llama"}, "model_type")]:
        folder = tmp_path / needle
        shutil.copytree(exported, folder)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(CheckpointError, match=needle):
            import_hf(str(folder))


def test_export_refuses_a_folder_that_is_not_empty(checkpoint, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        export_hf(str(checkpoint), str(tmp_path))
    assert os.listdir(tmp_path) == ["notes.txt"]  # nothing written, no temporary folder left


def test_the_trainer_exports_and_generates_without_transformers(checkpoint, tmp_path):
    """`transformers` is a test-only extra: the trainer reads and writes the format itself."""
    code = ("import sys\n"
            "sys.modules['transformers'] = None  # any import of it now raises ImportError\n"
            "from trainer.hf import export_hf\n"
            "from trainer.generate import generate_text, load\n"
            "export_hf(sys.argv[1], sys.argv[2])\n"
            "print(generate_text(*load(sys.argv[2]), 'KING', max_new_tokens=5))\n")
    out = subprocess.run([sys.executable, "-c", code, str(checkpoint), str(tmp_path / "gpt2")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("KING") and sorted(os.listdir(tmp_path / "gpt2")) == FILES
    (tmp_path / "probe").mkdir()  # the export has the mode of any new folder (the umask's)
    assert (tmp_path / "gpt2").stat().st_mode == (tmp_path / "probe").stat().st_mode
    (tmp_path / "probe" / "file").write_text("")
    for name in FILES:
        assert (tmp_path / "gpt2" / name).stat().st_mode == \
            (tmp_path / "probe" / "file").stat().st_mode, name


def test_cli_export_writes_the_folder_and_says_so(checkpoint, tmp_path):
    out = corpus("export", "--checkpoint", str(checkpoint.parent), "--out",
                 str(tmp_path / "gpt2"))
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(tmp_path / "gpt2")) == FILES
    for name in FILES:
        assert name in out.stdout
    assert str(tmp_path / "gpt2") in out.stdout.splitlines()[0]
    one_line_error(corpus("export", "--checkpoint", str(checkpoint), "--out",
                          str(tmp_path / "gpt2")), "not empty")
    one_line_error(corpus("export", "--checkpoint", str(tmp_path / "absent" / "ckpt.pt"),
                          "--out", str(tmp_path / "new")), "checkpoint not found")
    assert not (tmp_path / "new").exists()
