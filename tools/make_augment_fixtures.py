"""Writes tests/fixtures/augment_torchvision.bin.gz: torchvision 0.14's augmentation ops applied to
uint8 image tensors, for tests/augment_test.ts (which never runs Python). Layout: u32 JSON length,
JSON (cases), the input images (uint8 [N,3,32,32]), each case's outputs (uint8 [N,3,32,32]), then
the normalised inputs (float32 [N,3,32,32], ToTensor + Normalize).

Run: /usr/bin/python3 tools/make_augment_fixtures.py  (needs apt's python3-torchvision)"""
import gzip, io, json, struct, tarfile
import numpy as np
import torch
import torchvision
from torchvision.transforms import InterpolationMode, RandAugment
from torchvision.transforms import functional as F
from torchvision.transforms.autoaugment import _apply_op

ARCHIVE = "../shared/data/cifar-10-binary.tar.gz"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)

def cifar_image(index):
    with tarfile.open(ARCHIVE) as tar:
        data = tar.extractfile("cifar-10-batches-bin/data_batch_1.bin").read(3073 * (index + 1))
    return torch.tensor(list(data[3073 * index + 1 : 3073 * (index + 1)]), dtype=torch.uint8).reshape(3, 32, 32)

def low_contrast_image():
    g = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    base = torch.stack([60 + 2 * x, 90 + y + x // 2, 120 + (x * y) % 40]).float()
    noise = torch.randint(-6, 7, (3, 32, 32), generator=g).float()
    return (base + noise).clamp(0, 255).to(torch.uint8)

images = torch.stack([cifar_image(0), low_contrast_image()])
cases, outputs = [], []
space = RandAugment()._augmentation_space(31, (32, 32))
for name, (magnitudes, signed) in space.items():
    if name == "Identity":
        continue
    for m, negative in ((7, False), (12, True), (30, True)):
        magnitude = float(magnitudes[m].item()) if magnitudes.ndim > 0 else 0.0
        if signed and negative:
            magnitude = -magnitude
        cases.append({"kind": "op", "op": name, "bin": m, "negative": signed and negative, "magnitude": magnitude})
        outputs.append(torch.stack([_apply_op(img, name, magnitude, InterpolationMode.NEAREST, None) for img in images]))
for top, left, size, flip in ((0, 0, 32, False), (3, 5, 24, True), (8, 2, 17, False), (0, 7, 25, True), (1, 1, 28, False)):
    cases.append({"kind": "crop", "top": top, "left": left, "size": size, "flip": flip})
    out = F.resized_crop(images, top, left, size, size, [32, 32], InterpolationMode.BILINEAR)
    outputs.append(F.hflip(out) if flip else out)
normalised = F.normalize(images.float().div(255), MEAN, STD)

header = json.dumps({"torchvision": torchvision.__version__, "count": len(images), "cases": cases}).encode()
blob = io.BytesIO()
blob.write(struct.pack("<I", len(header)))
blob.write(header)
blob.write(images.numpy().tobytes())
for out in outputs:
    blob.write(out.numpy().astype(np.uint8).tobytes())
blob.write(normalised.numpy().astype("<f4").tobytes())
with gzip.open("tests/fixtures/augment_torchvision.bin.gz", "wb", compresslevel=9) as f:
    f.write(blob.getvalue())
print(f"{len(cases)} cases, {len(images)} images")
