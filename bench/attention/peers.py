#!/usr/bin/env python3
"""Peer timings for bench_attention (run by it on the GPU machine, where PyTorch is installed).

Reads a job file, one job per line:
    <name> cudnn <seq> <heads> <head_dim>
    <name> flex  <seq> <heads> <head_dim> <mask.npy>
and prints one line per job:
    RESULT <name> <median ms> <kept share of blocks> <block size>
    ERROR <name> <message>
cuDNN runs PyTorch SDPA with the cuDNN backend (dense, bf16, [1, heads, seq, head_dim]).
FlexAttention runs the mask (uint8 [heads, q_blocks, k_blocks] at 64-token blocks) as a
BlockMask of 64-token blocks with BLOCK_M = BLOCK_N = 64, on seq padded to a multiple of 128
(padding blocks keep only their diagonal); if that fails it falls back to 128-token blocks (a
128-block is kept when any of its four 64-blocks is).
"""
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import BlockMask, flex_attention

REPS = 5
flex = torch.compile(flex_attention, dynamic=False)


def median_ms(fn, reps=REPS):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def random_qkv(seq, heads, head_dim):
    shape = (1, heads, seq, head_dim)
    return [torch.randn(shape, device="cuda", dtype=torch.bfloat16) for _ in range(3)]


def cudnn_job(seq, heads, head_dim):
    q, k, v = random_qkv(seq, heads, head_dim)
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v))
    return ms, 1.0, 0


def padded_mask(mask, seq_pad):
    heads, q_blocks, k_blocks = mask.shape
    blocks = seq_pad // 64
    full = np.zeros((heads, blocks, blocks), dtype=np.uint8)
    full[:, :q_blocks, :k_blocks] = mask
    for i in range(min(q_blocks, k_blocks), blocks):
        full[:, i, i] = 1
    return full


def coarsen(mask):
    heads, n, _ = mask.shape
    m = mask.reshape(heads, n // 2, 2, n // 2, 2)
    return m.max(axis=(2, 4))


def block_mask_of(mask, block):
    t = torch.from_numpy(mask).cuda()
    num = t.sum(dim=-1, dtype=torch.int32)
    order = torch.argsort(t.to(torch.int8), dim=-1, descending=True, stable=True).to(torch.int32)
    return BlockMask.from_kv_blocks(num[None], order[None], BLOCK_SIZE=block), float(
        t.float().mean().item())


def flex_job(seq, heads, head_dim, path):
    seq_pad = math.ceil(seq / 128) * 128
    full = padded_mask(np.load(path), seq_pad)
    q, k, v = random_qkv(seq_pad, heads, head_dim)
    errors = []
    for block in (64, 128):
        try:
            mask = full if block == 64 else coarsen(full)
            block_mask, kept = block_mask_of(mask, block)
            options = {"BLOCK_M": 64, "BLOCK_N": 64} if block == 64 else None
            ms = median_ms(lambda: flex(q, k, v, block_mask=block_mask, kernel_options=options))
            return ms, kept, block
        except Exception as error:  # a block size that does not compile: try the next
            errors.append(f"block {block}: {type(error).__name__}: {str(error)[:200]}")
            torch.cuda.empty_cache()
    raise RuntimeError("; ".join(errors))


def main():
    print(f"# peers: torch {torch.__version__}, {torch.cuda.get_device_name()}", flush=True)
    for line in open(sys.argv[1]):
        parts = line.split()
        if not parts:
            continue
        name, kind = parts[0], parts[1]
        seq, heads, head_dim = int(parts[2]), int(parts[3]), int(parts[4])
        try:
            if kind == "cudnn":
                ms, kept, block = cudnn_job(seq, heads, head_dim)
            else:
                ms, kept, block = flex_job(seq, heads, head_dim, parts[5])
            print(f"RESULT {name} {ms:.4f} {kept:.6f} {block}", flush=True)
        except Exception as error:
            message = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            print(f"ERROR {name} {message}", flush=True)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
