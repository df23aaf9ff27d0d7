#!/usr/bin/python3
"""PyTorch's speed on the same ConvMixer training step, the baseline for bench/bench.ts.

  /usr/bin/python3 bench/pytorch_bench.py --hdim 256 --depth 8 --kernel 5 --patch 2 --batch 128 \
      --threads 2 --device cpu --steps 5 --warmup 2

Measures, in both memory formats (NCHW "contiguous" and NHWC "channels_last", reporting each and
the faster): the training step (forward, cross-entropy, backward, clip_grad_norm_, AdamW step, as
the ConvMixer CIFAR-10 script does), the inference forward (eval, no_grad), and the kernels at the
block's shape [B, C, S/p, S/p]: pointwise 1×1 conv forward, depthwise k×k conv forward and its two
backward halves (input and weight gradients, aten.convolution_backward as autograd calls it).
Times are medians over --steps runs after --warmup runs. Prints one JSON object on stdout.

FLOPs are counted analytically, 2 per multiply-add, convolutions and the head only (GELU, BatchNorm,
pooling and the optimizer are memory-bound and not counted). With T = (S/p)² tokens per image:
  forward MACs per image = T·C·3·p² (patch embedding) + depth·T·C·(k² + C) (depthwise + pointwise)
                           + C·classes (head)
  forward FLOPs = 2·MACs;  training FLOPs = 3 × forward (backward = input gradient + weight gradient,
  each as many MACs as the forward; the stem's unneeded input gradient is counted too, as in
  convMixerFlops of src/model.ts, so both sides divide by the same number).
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Residual(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


def conv_mixer(dim, depth, kernel, patch, classes):
    """timm's / the paper's ConvMixer (same modules as tools/make_fixtures.py)."""
    def block():
        depthwise = nn.Sequential(
            nn.Conv2d(dim, dim, kernel, groups=dim, padding="same"), nn.GELU(), nn.BatchNorm2d(dim)
        )
        return nn.Sequential(Residual(depthwise), nn.Conv2d(dim, dim, 1), nn.GELU(), nn.BatchNorm2d(dim))

    return nn.Sequential(
        nn.Conv2d(3, dim, patch, stride=patch), nn.GELU(), nn.BatchNorm2d(dim),
        *[block() for _ in range(depth)],
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(dim, classes),
    )


def forward_flops(dim, depth, kernel, patch, classes, size):
    tokens = (size // patch) ** 2
    macs = tokens * dim * 3 * patch * patch + depth * tokens * dim * (kernel * kernel + dim) + dim * classes
    return 2 * macs


def median_ms(fn, steps, warmup, device):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for flag, default in [("hdim", 256), ("depth", 8), ("kernel", 5), ("patch", 2), ("batch", 128),
                          ("image-size", 32), ("classes", 10), ("threads", 2), ("steps", 5), ("warmup", 2)]:
        parser.add_argument(f"--{flag}", type=int, default=default)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--clip", type=float, default=1.0, help="clip_grad_norm_ max_norm (0 = no clipping)")
    args = parser.parse_args()
    if args.image_size % args.patch != 0:
        parser.error(f"--image-size {args.image_size} is not divisible by --patch {args.patch}")
    if args.kernel % 2 != 1:
        parser.error(f"--kernel {args.kernel} must be odd ('same' padding)")
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this PyTorch build sees no CUDA device")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, C, k, S, p = args.batch, args.hdim, args.kernel, args.image_size, args.patch
    flops = forward_flops(C, args.depth, k, p, args.classes, S)
    timing = lambda fn: median_ms(fn, args.steps, args.warmup, device)
    formats = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}

    def rate(result, flop_count):
        result["gflops"] = flop_count / (result["median_ms"] * 1e-3) / 1e9
        return result

    train, forward = {}, {}
    images = torch.randn(B, 3, S, S, device=device)
    labels = torch.randint(0, args.classes, (B,), device=device)
    for name, fmt in formats.items():
        model = conv_mixer(C, args.depth, k, p, args.classes).to(device, memory_format=fmt).train()
        x = images.contiguous(memory_format=fmt)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.05)

        def step():
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), labels).backward()
            if args.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            optimizer.step()

        train[name] = rate(timing(step), 3 * flops * B)
        model.eval()
        with torch.no_grad():
            forward[name] = rate(timing(lambda: model(x)), flops * B)
    for result in (train, forward):
        result["best"] = min(formats, key=lambda n: result[n]["median_ms"])
        result["images_per_s"] = B / (result[result["best"]]["median_ms"] * 1e-3)

    # Kernels at one block's shape; each FLOP count is 2 per multiply-add.
    h = S // p
    kernels = {}
    pad = (k - 1) // 2
    tokens = B * h * h
    for name, fmt in formats.items():
        x = torch.randn(B, C, h, h, device=device).contiguous(memory_format=fmt)
        dy = torch.randn_like(x)
        pointwise = torch.randn(C, C, 1, 1, device=device).contiguous(memory_format=fmt)
        depthwise = torch.randn(C, 1, k, k, device=device).contiguous(memory_format=fmt)

        def backward(mask):
            return lambda: torch.ops.aten.convolution_backward(
                dy, x, depthwise, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], C, mask)

        with torch.no_grad():
            for kernel_name, fn, count in [
                ("pointwise_forward", lambda: F.conv2d(x, pointwise), 2 * tokens * C * C),
                ("depthwise_forward", lambda: F.conv2d(x, depthwise, padding=pad, groups=C), 2 * tokens * C * k * k),
                ("depthwise_backward_input", backward([True, False, False]), 2 * tokens * C * k * k),
                ("depthwise_backward_weight", backward([False, True, False]), 2 * tokens * C * k * k),
            ]:
                kernels.setdefault(kernel_name, {"shape_nhwc": [B, h, h, C]})[name] = rate(timing(fn), count)
    for result in kernels.values():
        result["best"] = min(formats, key=lambda n: result[n]["median_ms"])

    print(json.dumps({
        "framework": f"pytorch {torch.__version__}",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} threads",
        "config": {"hdim": C, "depth": args.depth, "kernel": k, "patch": p, "classes": args.classes},
        "batch": B, "image_size": S, "steps": args.steps, "warmup": args.warmup, "clip": args.clip,
        "flops_per_image": {"forward": flops, "training": 3 * flops},
        "train_step": train, "forward": forward, "kernels": kernels,
    }, indent=1))


if __name__ == "__main__":
    main()
