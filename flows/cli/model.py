"""`corpus train`, `corpus generate`, `corpus evaluate` and `corpus export`: a GPT trained on a
finished dataset, judged and used without writing Python.

    corpus train --dataset DATASET --preset gpt2 --steps 5000
    corpus generate --checkpoint DATASET/train --prompt "ROMEO:" --seed 1
    corpus evaluate --checkpoint DATASET/train --text held-out.jsonl --tasks hellaswag.jsonl
    corpus export --checkpoint DATASET/train/ckpt.pt --out gpt2-export

`--checkpoint` is a `ckpt.pt`, the folder holding one (training writes `tokenizer.json` beside
it), or a folder that `corpus export` wrote.
"""

from __future__ import annotations

import json
import os

from flows.cli.common import UserError, number, positive_int, print_train, whole_number
from flows.cli.options import TRAIN, config_from
from flows.dataset_root import DatasetRoot, is_url, normalize_root


def cmd_train(args) -> int:
    from flows.train_flow import DatasetError, corpus_train, preflight
    from pipelines.core.contract import StageNotFinished

    dataset = normalize_root(args.dataset)
    if is_url(dataset):
        raise UserError("train reads token shards with numpy.memmap: give a local --dataset")
    if not os.path.isdir(dataset):
        raise UserError(f"dataset folder not found: {args.dataset}")
    if args.init_from and not os.path.exists(args.init_from):
        raise UserError(f"checkpoint not found: {args.init_from}")
    if args.init_from and args.resume:
        raise UserError("--resume continues this run's own checkpoints: drop --init-from")
    nodes = None
    if args.nnodes > 1:
        from trainer.launch import rendezvous_args

        if not 0 <= args.node_rank < args.nnodes:
            raise UserError(f"--node-rank must be within 0..{args.nnodes - 1}")
        if not args.rdzv_endpoint:
            raise UserError("--nnodes above 1 needs --rdzv-endpoint HOST:PORT (node 0's)")
        nodes = rendezvous_args(args.nnodes, args.node_rank, args.rdzv_endpoint)
    root = DatasetRoot(args.out or dataset)
    config = config_from(args)
    try:
        preflight(dataset, config, args.out, args.resume)
        with root.lock("corpus train"):
            result = corpus_train(dataset, config.to_dict(), out=args.out,
                                  init_from=args.init_from, resume=args.resume, nodes=nodes)
    except StageNotFinished:
        raise UserError(f"{args.dataset} has no finished token shards (tokenize stage); run "
                        f"`corpus build` first") from None
    except DatasetError as err:
        raise UserError(str(err)) from None
    print_train(result)
    return 0


def checked_device(name: str) -> str:
    import torch

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


def load_checked(args, device: str):
    """(model, tokenizer) of --checkpoint and --tokenizer; what is wrong with them is one line."""
    from trainer.generate import load
    from trainer.hf import CheckpointError, MissingTokenizer

    try:
        return load(args.checkpoint, args.tokenizer, device=device)
    except MissingTokenizer as err:
        raise UserError(f"{err} with --tokenizer") from None
    except (FileNotFoundError, CheckpointError) as err:
        raise UserError(str(err)) from None


def cmd_generate(args) -> int:
    from trainer.generate import generate_text

    device = checked_device(args.device)
    model, tokenizer = load_checked(args, device)
    print(generate_text(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens,
                        temperature=args.temperature, top_k=args.top_k, seed=args.seed,
                        device=device))
    return 0


def cmd_evaluate(args) -> int:
    from trainer.evaluate import evaluate_task, read_tasks, read_texts, text_loss

    if not args.text and not args.tasks:
        raise UserError("nothing to evaluate: give --text FILE and/or --tasks FILE")
    try:  # every input read and checked before the model is loaded
        texts = {path: read_texts(path) for path in args.text}
        tasks = {path: read_tasks(path) for path in args.tasks}
    except (OSError, ValueError) as err:
        raise UserError(str(err)) from None
    device = checked_device(args.device)
    model, tokenizer = load_checked(args, device)
    block = args.block_size or model.config.block_size
    if block > model.config.block_size:
        raise UserError(f"--block-size {block}: the model's context is "
                        f"{model.config.block_size} tokens")
    if args.stride and args.stride > block:
        raise UserError(f"--stride {args.stride} is more than the block size {block}")
    result = {"checkpoint": args.checkpoint, "parameters": model.num_params(), "device": device,
              "block_size": block, "stride": args.stride or block, "text": [], "tasks": []}
    for path, docs in texts.items():
        try:
            score = text_loss(model, tokenizer, docs, block_size=block,
                              batch_size=args.batch_size, stride=args.stride)
        except ValueError as err:  # every document empty
            raise UserError(f"{path}: {err}") from None
        result["text"].append({"path": path, **score.to_dict()})
    for path, questions in tasks.items():
        try:  # a choice that encodes to no tokens names its file and line
            score = evaluate_task(model, tokenizer, questions, batch_size=args.batch_size)
        except ValueError as err:
            raise UserError(str(err)) from None
        result["tasks"].append({"path": path, **score.to_dict()})
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_evaluation(result)
    return 0


def _table(rows: list[tuple]) -> None:
    """Left-aligned first column, the others right-aligned, a rule under the header."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def print_evaluation(result: dict) -> None:
    print(f"model: {result['checkpoint']} ({result['parameters']:,} parameters, "
          f"{result['device']}), windows of {result['block_size']} tokens, stride "
          f"{result['stride']}")
    if result["text"]:
        print()
        _table([("text", "documents", "tokens", "bytes", "loss (nats/token)", "bits/byte")] +
               [(t["path"], f"{t['documents']:,}", f"{t['tokens']:,}", f"{t['bytes']:,}",
                 f"{t['loss']:.4f}", f"{t['bits_per_byte']:.4f}") for t in result["text"]])
    if result["tasks"]:
        def with_error(p, err):
            return f"{p:.4f}" + (f" ± {err:.4f}" if err is not None else "")

        print()
        _table([("task", "n", "acc ± stderr", "acc_norm ± stderr")] +
               [(t["path"], f"{t['n']:,}", with_error(t["acc"], t["acc_stderr"]),
                 with_error(t["acc_norm"], t["acc_norm_stderr"])) for t in result["tasks"]])


def cmd_export(args) -> int:
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


def model_arguments(parser) -> None:
    """--checkpoint and --tokenizer, as generate and evaluate take them."""
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="ckpt.pt, the training folder holding it, or a folder written by "
                        "`corpus export`")
    parser.add_argument("--tokenizer", metavar="PATH",
                        help="the dataset's tokenizer.json (default: the one beside the "
                        "checkpoint)")


def register(sub, common) -> None:
    train = sub.add_parser("train", help="train a GPT on a finished dataset's token shards")
    train.add_argument("--dataset", required=True, help="dataset folder made by build or demo")
    train.add_argument("--out", help="where the train/ folder goes (default: the dataset)")
    train.add_argument("--init-from", help="checkpoint to fine-tune from: a ckpt.pt, or a "
                       "folder made by `corpus export` (a Hugging Face GPT-2 folder)")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted (or finished) run from the newest complete "
                       "checkpoint in its train/checkpoints/, exactly where it stopped")
    train.add_argument("--nnodes", type=positive_int, default=1,
                       help="machines taking part (default 1); run the same command on each")
    train.add_argument("--node-rank", type=int, default=0,
                       help="this machine's number, 0 .. nnodes-1 (with --nnodes)")
    train.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                       help="where the machines meet: node 0's address and a free port "
                       "(torchrun's c10d rendezvous; with --nnodes)")
    common(train, TRAIN, cmd_train, output=False)

    generate = sub.add_parser("generate", help="sample text from a trained model (ckpt.pt or an "
                              "exported folder)")
    model_arguments(generate)
    generate.add_argument("--prompt", default="", metavar="TEXT",
                          help="text to continue (default: empty, a new document)")
    generate.add_argument("--max-new-tokens", type=positive_int, default=100, metavar="N",
                          help="tokens to sample (default %(default)s)")
    generate.add_argument("--temperature", type=number(at_least=0), default=0.8, metavar="T",
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

    evaluate = sub.add_parser("evaluate", help="score a model on held-out text (loss, bits per "
                              "byte) and multiple-choice tasks (acc, acc_norm)")
    model_arguments(evaluate)
    evaluate.add_argument("--text", nargs="+", action="extend", default=[], metavar="PATH",
                          help="held-out documents: .txt (the file is one document), .jsonl or "
                          ".jsonl.gz (a \"text\" field a line), .parquet (a \"text\" column)")
    evaluate.add_argument("--tasks", nargs="+", action="extend", default=[], metavar="PATH",
                          help="multiple-choice task files, JSONL: {\"context\": ..., "
                          "\"choices\": [...], \"answer\": N} a line")
    evaluate.add_argument("--block-size", type=positive_int, metavar="T",
                          help="tokens a text window holds (default: the model's context)")
    evaluate.add_argument("--stride", type=positive_int, metavar="S",
                          help="new tokens each text window after the first predicts, with the "
                          "T-S before them as context (default T: windows do not overlap)")
    evaluate.add_argument("--batch-size", type=positive_int, default=8, metavar="N",
                          help="sequences a forward pass holds (default %(default)s)")
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON")
    evaluate.add_argument("--device", default="auto",
                          help="cpu, cuda, cuda:N or auto (CUDA when present; default "
                          "%(default)s)")
    evaluate.set_defaults(func=cmd_evaluate)

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
