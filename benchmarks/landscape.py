"""Loss-landscape grid speed: images/s of a 2-D grid evaluation versus one plain big-batch forward pass.

The seed SimpleCNN (eval mode) on N synthetic images. Contenders, alternated round by round, medians:
  plain  one forward + cross-entropy of the N images in one batch (the practical limit of the hardware)
  vmap   loss_surface(..., method="vmap"): grid × grid points, each over the same N images
  loop   loss_surface(..., method="loop"): the same grid, one point at a time
Prints one JSON line; `ratio` = vmap images/s ÷ plain images/s (goal >= 0.8), `loop_ratio` likewise.

The Hessian (same model, same N images), alternated the same way:
  fwd_bwd    one forward + backward pass (loss and gradient) over the N images
  lambda_max hessian_eigenvalues(k=1, tol=1e-3) from a random start: Lanczos on Hessian-vector products
`hessian.ratio` = seconds per λ_max estimate ÷ seconds per forward+backward (the order to beat: 20 Lanczos steps
≈ 50 backward passes); `hessian.per_hvp` = that cost per Hessian-vector product.
    python benchmarks/landscape.py [--images 128] [--grid 5] [--repeats 3] [--device auto]
    python benchmarks/landscape.py --images 2048 --grid 21 --chunk-size 16      # a GPU-sized run
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

import ftkit
from ftkit.data import synthetic
from ftkit.optviz.hessian import hessian_eigenvalues
from ftkit.optviz.directions import random_directions
from ftkit.optviz.landscape import loss_surface
from ftkit.models import SimpleCNN


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=128, help="N images per grid point")
    ap.add_argument("--grid", type=int, default=5, help="grid × grid points")
    ap.add_argument("--chunk-size", type=int, default=None, help="points per vmap call (default: automatic)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    ftkit.seed_everything(0)
    device = ftkit.get_device(args.device)
    model = SimpleCNN().to(device).eval()
    x, y = (t.to(device) for t in synthetic.image_classification(args.images))
    directions = random_directions(model, seed=0)
    loss_fn = torch.nn.functional.cross_entropy
    grid_kw = dict(resolution=args.grid, batch_size=args.images, chunk_size=args.chunk_size, verbose=False)
    n_grid = args.grid ** 2 * args.images

    def plain():
        with torch.no_grad():
            return float(loss_fn(model(x), y))

    def grid(method):
        return loss_surface(model, loss_fn, (x, y), directions, method=method, **grid_kw).losses

    def fwd_bwd():
        loss = loss_fn(model(x), y)
        torch.autograd.grad(loss, list(model.parameters()))
        return loss.item()

    def lambda_max():
        return hessian_eigenvalues(model, loss_fn, (x, y), k=1, tol=1e-3, batch_size=args.images)

    contenders = {"plain": plain, "vmap": lambda: grid("vmap"), "loop": lambda: grid("loop"), "fwd_bwd": fwd_bwd,
                  "lambda_max": lambda_max}
    times = {k: [] for k in contenders}
    results = {}
    for r in range(args.repeats + 1):  # round 0 warms up; the order rotates each round
        names = list(contenders)
        for name in names[r % len(names):] + names[:r % len(names)]:
            sync(device)
            t0 = time.perf_counter()
            results[name] = contenders[name]()
            sync(device)
            if r:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    speed = {"plain": args.images / med["plain"], "vmap": n_grid / med["vmap"], "loop": n_grid / med["loop"]}
    center = results["vmap"][args.grid // 2, args.grid // 2] if args.grid % 2 else None
    spec = results["lambda_max"]
    print(json.dumps({
        "benchmark": "landscape", "model": "SimpleCNN", "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(), "images": args.images, "grid": args.grid,
        "chunk_size": args.chunk_size, "plain_images_per_s": round(speed["plain"]),
        "vmap_images_per_s": round(speed["vmap"]), "loop_images_per_s": round(speed["loop"]),
        "ratio": round(speed["vmap"] / speed["plain"], 3), "loop_ratio": round(speed["loop"] / speed["plain"], 3),
        "goal": 0.8, "max_abs_diff_vmap_loop": float(np.nanmax(np.abs(results["vmap"] - results["loop"]))),
        "center_matches_plain": None if center is None else bool(abs(center - results["plain"]) < 1e-4),
        "hessian": {"fwd_bwd_s": round(med["fwd_bwd"], 4), "lambda_max_s": round(med["lambda_max"], 3),
                    "ratio": round(med["lambda_max"] / med["fwd_bwd"], 1), "hvps": spec.hvps,
                    "per_hvp": round(med["lambda_max"] / med["fwd_bwd"] / spec.hvps, 2),
                    "lambda_max": round(spec.max, 4), "residual": float(spec.residuals[0]), "order_to_beat": 50}}))


if __name__ == "__main__":
    main()
