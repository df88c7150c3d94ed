"""`corpus generate` and `corpus export`: use a trained model without writing Python.

    corpus generate --checkpoint DATASET/train --prompt "ROMEO:" --seed 1
    corpus export --checkpoint DATASET/train/ckpt.pt --out gpt2-export

`--checkpoint` is a `ckpt.pt`, the folder holding one (training writes `tokenizer.json` beside
it), or a folder that `corpus export` wrote. Problems a user can fix are one line (`UserError`).
"""

from __future__ import annotations

import os

from flows.cli import number, whole_number


def _checked_device(name: str) -> str:
    import torch

    from flows.cli import UserError
    from trainer.generate import resolve_device

    device = resolve_device(name)
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device name (cpu, cuda, cuda:N, auto)") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (parsed.index or 0) >= count:
            raise UserError(f"--device {name}: this machine has {count} CUDA device(s); use "
                            f"--device cpu or auto")
    return device


def cmd_generate(args) -> int:
    from flows.cli import UserError
    from trainer.generate import generate_text, load
    from trainer.hf import CheckpointError, MissingTokenizer

    device = _checked_device(args.device)
    try:
        model, tokenizer = load(args.checkpoint, args.tokenizer, device=device)
    except MissingTokenizer as err:
        raise UserError(f"{err} with --tokenizer") from None
    except (FileNotFoundError, CheckpointError) as err:
        raise UserError(str(err)) from None
    print(generate_text(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens,
                        temperature=args.temperature, top_k=args.top_k, seed=args.seed,
                        device=device))
    return 0


def cmd_export(args) -> int:
    from flows.cli import UserError
    from trainer.hf import CheckpointError, MissingTokenizer, export_hf

    if os.path.isdir(args.out) and os.listdir(args.out):
        raise UserError(f"--out {args.out} is not empty; export into a new or empty folder")
    try:
        written = export_hf(args.checkpoint, args.out, tokenizer_path=args.tokenizer)
    except MissingTokenizer as err:
        raise UserError(f"{err} with --tokenizer") from None
    except (FileNotFoundError, FileExistsError, CheckpointError) as err:
        raise UserError(str(err)) from None
    print(f"export: wrote a Hugging Face GPT-2 model to {args.out}")
    for path in written:
        print(f"  {os.path.basename(path):<24} {os.path.getsize(path):>12,} bytes")
    print(f"load it with transformers: GPT2LMHeadModel.from_pretrained({args.out!r}) and "
          f"AutoTokenizer.from_pretrained({args.out!r})")
    return 0


def add_model_commands(sub) -> None:
    """Add `generate` and `export` to the `corpus` subparsers."""
    from flows.cli import positive_int

    generate = sub.add_parser("generate", help="sample text from a trained model (ckpt.pt or an "
                              "exported folder)")
    generate.add_argument("--checkpoint", required=True, metavar="PATH",
                          help="ckpt.pt, the training folder holding it, or a folder written by "
                          "`corpus export`")
    generate.add_argument("--tokenizer", metavar="PATH",
                          help="the dataset's tokenizer.json (default: the one beside the "
                          "checkpoint)")
    generate.add_argument("--prompt", default="", metavar="TEXT",
                          help="text to continue (default: empty, a new document)")
    generate.add_argument("--max-new-tokens", type=positive_int, default=100, metavar="N",
                          help="tokens to sample (default %(default)s)")
    generate.add_argument("--temperature", type=number(at_least=0), default=0.8,
                          metavar="T",
                          help="softmax temperature; 0 = always the likeliest token "
                          "(default %(default)s)")
    generate.add_argument("--top-k", type=whole_number(0), default=50, metavar="K",
                          help="sample among the k likeliest tokens; 0 = all (default "
                          "%(default)s)")
    generate.add_argument("--seed", type=int, default=0, metavar="N",
                          help="sampling seed: the same seed gives the same text (default "
                          "%(default)s)")
    generate.add_argument("--device", default="auto",
                          help="cpu, cuda, cuda:N or auto (CUDA when present; default "
                          "%(default)s)")
    generate.set_defaults(func=cmd_generate)

    export = sub.add_parser("export", help="write a trained model as a Hugging Face GPT-2 folder "
                            "(config.json, model.safetensors, tokenizer)")
    export.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="ckpt.pt or the training folder holding it")
    export.add_argument("--out", required=True, metavar="DIR",
                        help="folder to write (new or empty)")
    export.add_argument("--tokenizer", metavar="PATH",
                        help="the dataset's tokenizer.json (default: the one beside the "
                        "checkpoint)")
    export.set_defaults(func=cmd_export)
