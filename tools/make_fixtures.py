#!/usr/bin/python3
"""Reference fixtures for the ConvMixer model tests, computed by PyTorch (deno task fixtures).

For each small config below this writes two safetensors files into tests/fixtures/:
  <name>.model.safetensors  the initial state dict under timm's names and shapes (float32, BN counters
                            int64), exactly what timm's ConvMixer.state_dict() holds: loadCheckpoint reads it.
  <name>.io.safetensors     one training step's inputs and outputs (all float32):
      images [B, H, W, 3] (NHWC), labels [B] (class indices)
      act.stem, act.blocks.{i} [B, h, w, C] (NHWC), act.pool [B, C]   activations of the train forward
      logits_train [B, K], loss []          model.train() forward, mean cross-entropy
      grad.<param>                          gradients (timm layout), before clipping
      grad_norm []                          their global L2 norm (clip_grad_norm_'s total_norm)
      running.<bn>.running_{mean,var}       BN running statistics after that forward
      logits_eval [B, K]                    model.eval() forward of the initial weights and statistics
      after_step.<param>                    after clip_grad_norm_(max_norm) + one AdamW step
      loss2 [], after_step2.<param>         a second train forward/backward/clip/step on the same batch
                                            (the AdamW moments now matter, not just sign(g))
    and metadata (strings): the config, batch, image size, optimizer hyperparameters, max_norm.

Weights, BN statistics and images are drawn in float32 (so the stored values are exact), then every
computation runs in float64: the references are far more accurate than the float32 code under test.
`deno task fixtures` rewrites every config; `/usr/bin/python3 tools/make_fixtures.py NAME…` only the
named ones (each config's seed is its position below, so the others stay byte-identical).
The model is timm's ConvMixer (and the paper's): GELU is exact (erf), BatchNorm eps 1e-5, momentum 0.1;
AdamW is torch.optim.AdamW over model.parameters() (weight decay on every parameter, as in the
ConvMixer CIFAR-10 script). BN weights, biases and running statistics are randomised so they are not
trivially 1 / 0. The test suite never runs this script; it only reads the committed files.
"""
import copy
import json
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))

# name: (hdim, depth, kernel, patch, classes, image size, batch). Channel counts are not multiples of
# the SIMD width; k9 on a 4×4 grid makes most taps fall in the padding. k7p2b1 has batch 1: its last
# BatchNorm normalises over exactly the positions the pool averages, so pooled = β and every gradient
# before the head is rounding noise; the model tests use k7p2b4 (batch 4 on the same 5×5 grid, the
# statistics over 100 positions) and only tests/checkpoint_test.ts still reads k7p2b1's state dict.
CONFIGS = {
    "k5p2": (8, 2, 5, 2, 10, 8, 3),
    "k3p1": (6, 1, 3, 1, 7, 12, 2),
    "k9p4": (5, 2, 9, 4, 10, 16, 2),
    "k7p2b1": (4, 1, 7, 2, 3, 10, 1),
    "k7p2b4": (4, 1, 7, 2, 3, 10, 4),
}
LR, WEIGHT_DECAY, BETAS, EPS = 0.01, 0.05, (0.9, 0.999), 1e-8


class Residual(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


class ConvMixer(nn.Module):
    """timm.models.convmixer.ConvMixer (same module names, so the same state-dict keys)."""

    def __init__(self, dim, depth, kernel_size, patch_size, num_classes):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size), nn.GELU(), nn.BatchNorm2d(dim)
        )
        self.blocks = nn.Sequential(
            *[
                nn.Sequential(
                    Residual(
                        nn.Sequential(
                            nn.Conv2d(dim, dim, kernel_size, groups=dim, padding="same"),
                            nn.GELU(),
                            nn.BatchNorm2d(dim),
                        )
                    ),
                    nn.Conv2d(dim, dim, kernel_size=1),
                    nn.GELU(),
                    nn.BatchNorm2d(dim),
                )
                for _ in range(depth)
            ]
        )
        self.pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.head(self.pooling(self.blocks(self.stem(x))))


def write_safetensors(path, tensors, metadata):
    """The safetensors format by hand: u64 header length, JSON header padded to 8 bytes, raw data."""
    header, chunks, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        dtype, np_dtype = ("I64", "<i8") if t.dtype == torch.int64 else ("F32", "<f4")
        data = t.numpy().astype(np_dtype).tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
    print(f"{path}: {os.path.getsize(path)} bytes")


def nhwc(x):
    return x.permute(0, 2, 3, 1)


def train_step(model, images, labels, max_norm, optimizer, activations):
    """Forward (recording activations), backward, clip, AdamW. Returns (logits, loss, grads, norm)."""
    def record(module, name, layout=nhwc):
        return module.register_forward_hook(lambda m, inputs, out: activations.__setitem__(name, layout(out)))

    hooks = [record(model.stem, "act.stem"), record(model.pooling, "act.pool", lambda out: out)]
    hooks += [record(block, f"act.blocks.{i}") for i, block in enumerate(model.blocks)]
    optimizer.zero_grad()
    logits = model(images)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    for h in hooks:
        h.remove()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return logits, loss, grads, norm


def make(name, hdim, depth, kernel, patch, classes, size, batch, seed):
    torch.manual_seed(seed)
    model = ConvMixer(hdim, depth, kernel, patch, classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(3)
    initial = copy.deepcopy(model.state_dict())
    images = torch.randn(batch, 3, size, size).double()
    labels = torch.randint(0, classes, (batch,))

    config = {"hdim": hdim, "depth": depth, "kernel": kernel, "patch": patch, "classes": classes}
    write_safetensors(os.path.join(OUT, f"{name}.model.safetensors"), initial, {k: str(v) for k, v in config.items()})

    evaluated = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        logits_eval = evaluated(images)

    model = model.double().train()
    # Clip at half the first step's gradient norm so clipping certainly acts.
    probe = copy.deepcopy(model)
    F.cross_entropy(probe(images), labels).backward()
    max_norm = float(f"{0.5 * torch.norm(torch.stack([p.grad.norm() for p in probe.parameters()])).item():.3g}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)

    io = {"images": nhwc(images), "labels": labels.double()}
    activations = {}
    logits, loss, grads, norm = train_step(model, images, labels, max_norm, optimizer, activations)
    assert norm > max_norm, "clipping must act"
    io.update(activations)
    io.update({"logits_train": logits, "loss": loss, "grad_norm": norm})
    io.update({f"grad.{n}": g for n, g in grads.items()})
    for n, b in model.named_buffers():
        if n.endswith("running_mean") or n.endswith("running_var"):
            io[f"running.{n}"] = b.clone()
    io["logits_eval"] = logits_eval
    io.update({f"after_step.{n}": p.detach().clone() for n, p in model.named_parameters()})
    _, loss2, _, _ = train_step(model, images, labels, max_norm, optimizer, {})
    io["loss2"] = loss2
    io.update({f"after_step2.{n}": p.detach().clone() for n, p in model.named_parameters()})

    metadata = {k: str(v) for k, v in config.items()}
    metadata.update({
        "image_size": str(size), "batch": str(batch), "seed": str(seed),
        "optimizer": "adamw", "lr": repr(LR), "weight_decay": repr(WEIGHT_DECAY),
        "beta1": repr(BETAS[0]), "beta2": repr(BETAS[1]), "eps": repr(EPS), "max_norm": repr(max_norm),
        "weight_decay_applies_to": "every parameter",
        "precision": "inputs float32, computed in float64, stored as float32",
    })
    write_safetensors(os.path.join(OUT, f"{name}.io.safetensors"), {k: v.float() for k, v in io.items()}, metadata)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for seed, (name, cfg) in enumerate(CONFIGS.items()):
        if len(sys.argv) == 1 or name in sys.argv[1:]:
            make(name, *cfg, seed=seed)
