"""Write a tiny, randomly initialised SAM 3 for transformers' ``Sam3Model`` into
huggingface_hub's cache layout for ``facebook/sam3``, under a given ``HF_HOME``.

It stands in for the gated weights only: samgeo-api, samgeo, transformers and
torch load it exactly as they load the real repository (``from_pretrained`` with
``HF_HUB_OFFLINE=1``). Run it with the MODEL environment's Python (it needs
torch and transformers, which the project's own environment must not have):

    <model-env>/bin/python tests/realstack/tiny_sam3.py <HF_HOME>

It prints one JSON line: the repository, the snapshot's commit and the files
with their sizes (what the env manager's weights manifest records). The output
is deterministic: the same seed, config and tokenizer give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = "facebook/sam3"
REVISION = "main"
SEED = 1234
WIDTH = 64  # every hidden size; the heads' attention splits it in 4


def tiny_config():  # -> transformers.Sam3Config
    """Full SAM 3 architecture at toy sizes; still takes 1008 px inputs (72x72 patches)."""
    from transformers import Sam3Config

    vocab = _vocab()
    heads = {"hidden_size": WIDTH, "num_attention_heads": 4, "intermediate_size": 2 * WIDTH}
    return Sam3Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam3_vit_model",
                **heads,
                "num_hidden_layers": 2,
                "window_size": 24,  # divides the 72 patches a side of a 1008 px input
                "global_attn_indexes": [1],
            },
            "fpn_hidden_size": WIDTH,
        },
        text_config={
            "model_type": "clip_text_model",
            **heads,
            "vocab_size": len(vocab),
            "projection_dim": WIDTH,
            "num_hidden_layers": 1,
            "max_position_embeddings": 32,  # the processor pads prompts to 32 tokens
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        geometry_encoder_config={**heads, "num_layers": 1},
        detr_encoder_config={**heads, "num_layers": 1},
        detr_decoder_config={**heads, "num_layers": 1, "num_queries": 10},
        mask_decoder_config={"hidden_size": WIDTH, "num_attention_heads": 4},
    )


# A CLIP tokenizer needs a byte-level BPE vocabulary: the 256 byte symbols, each
# also as a word end ("</w>"), the two special tokens and a few merges.
_MERGES = ("t r", "e e", "tr ee", "tree s</w>")


def _byte_symbols() -> list[str]:
    # GPT-2/CLIP's reversible byte-to-unicode table.
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    symbols, extra = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def _vocab() -> dict[str, int]:
    symbols = _byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols)]
    tokens += ["".join(merge.split()) for merge in _MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}


def _tokenizer(folder: Path):  # -> transformers.CLIPTokenizer
    from transformers import CLIPTokenizer

    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(_vocab()), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n", encoding="utf-8")
    return CLIPTokenizer(vocab_file=str(vocab_file), merges_file=str(merges_file))


def _make_confident(model) -> None:
    """Random weights score every query near 0.25 (two sigmoids of ~0), below samgeo's
    default threshold of 0.5: shift two biases so that a request with the app's
    defaults finds objects, while the scores still vary with the image and prompt."""
    import torch

    with torch.no_grad():
        model.detr_decoder.presence_head.layer3.bias.fill_(4.0)  # presence ~0.98
        scoring = model.dot_product_scoring
        # A shared offset in both projections adds WIDTH * 0.5**2 / sqrt(WIDTH) = 2
        # to every query's logit.
        scoring.text_proj.bias.fill_(0.5)
        scoring.query_proj.bias.fill_(0.5)


def build(folder: Path) -> int:
    """Save the model and its processor into ``folder``; the parameter count."""
    import torch
    from transformers import Sam3ImageProcessor, Sam3Model, Sam3Processor

    torch.manual_seed(SEED)
    model = Sam3Model(tiny_config()).eval()
    _make_confident(model)
    model.save_pretrained(folder)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = _tokenizer(Path(scratch))
        Sam3Processor(image_processor=Sam3ImageProcessor(), tokenizer=tokenizer).save_pretrained(
            folder
        )
    return sum(p.numel() for p in model.parameters())


def install_into_cache(folder: Path, hf_home: Path) -> dict[str, object]:
    """Lay ``folder``'s files out as huggingface_hub's cache of ``facebook/sam3``."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    digests = {p.relative_to(folder).as_posix(): _sha256(p) for p in files}
    # A stable commit id: the same files give the same snapshot.
    commit = hashlib.sha1(json.dumps(digests, sort_keys=True).encode()).hexdigest()
    repo_dir = hf_home / "hub" / f"models--{REPO.replace('/', '--')}"
    sizes = {}
    for path in files:
        name = path.relative_to(folder).as_posix()
        blob = repo_dir / "blobs" / digests[name]
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            os.replace(path, blob)
        pointer = repo_dir / "snapshots" / commit / name
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.unlink(missing_ok=True)
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
        sizes[name] = blob.stat().st_size
    # Last, as huggingface_hub does: refs/main names a commit once its snapshot is whole.
    ref = repo_dir / "refs" / REVISION
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit, encoding="utf-8")
    return {"repo": REPO, "commit": commit, "files": sizes}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    hf_home = Path(argv[0]).expanduser().absolute()
    with tempfile.TemporaryDirectory(dir=hf_home.parent if hf_home.parent.exists() else None) as d:
        parameters = build(Path(d))
        result = install_into_cache(Path(d), hf_home)
    print(json.dumps({**result, "parameters": parameters}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
