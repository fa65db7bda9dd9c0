#!/usr/bin/env python3
"""The PyTorch (CPU) side of tools/bench-ops.c: the same ops at the same shapes, with the same
FLOP/byte counts and the same output format, so the two can be compared line by line.

Usage: python3 tools/bench-ops-torch.py [--reps N] [--quick] [--only NAME] [--cputime] [--threads T]
Threads: --threads, else OMP_NUM_THREADS, else torch's default. Forward passes run under no_grad;
backward passes time torch.autograd.grad of the op's output alone (inputs, weights and bias).
The channel LayerNorm is LoLa's own (torch.var_mean, unbiased, then rsqrt), the attention is
torch.nn.functional.scaled_dot_product_attention on (B, H, N, dh) tensors.
"""
import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F


def parse():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=None)
    ap.add_argument("--cputime", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    return ap.parse_args()


ARGS = parse()
CLOCK = time.process_time if ARGS.cputime else time.perf_counter


def time_op(fn):
    fn()
    ts = []
    for _ in range(max(1, ARGS.reps)):
        t0 = CLOCK()
        fn()
        ts.append(CLOCK() - t0)
    return statistics.median(ts)


def report(name, shape, sec, flops=0.0, nbytes=0.0):
    line = f"{name:<22} {shape:<34} {sec * 1e3:9.3f} ms"
    if flops:
        line += f"  {flops / sec * 1e-9:8.1f} GFLOP/s"
    if nbytes:
        line += f"  {nbytes / sec * 1e-9:8.1f} GB/s"
    print(line, flush=True)


def wanted(name):
    return ARGS.only is None or ARGS.only in name


def grad_fn(y, inputs, dy):
    return lambda: torch.autograd.grad(y, inputs, dy, retain_graph=True)


def bench_conv(B, Cin, Cout, H, W, K):
    if not wanted("conv"):
        return
    x = torch.randn(B, Cin, H, W, requires_grad=True)
    w = (0.05 * torch.randn(Cout, Cin, K, K)).requires_grad_()
    b = (0.1 * torch.randn(Cout)).requires_grad_()
    shape = f"B{B} {Cin}->{Cout} {H}x{W} K{K}"
    fl = 2.0 * B * H * W * Cout * Cin * K * K

    def fwd():
        with torch.no_grad():
            F.conv2d(x, w, b, padding=K // 2)

    report("conv2d forward", shape, time_op(fwd), fl)
    y = F.conv2d(x, w, b, padding=K // 2)
    report("conv2d backward", shape, time_op(grad_fn(y, (x, w, b), torch.randn_like(y))), 2 * fl)


def bench_linear(M, K, N):
    if not wanted("linear"):
        return
    x = torch.randn(M, K, requires_grad=True)
    w = (0.03 * torch.randn(N, K)).requires_grad_()
    b = (0.1 * torch.randn(N)).requires_grad_()
    shape = f"M{M} {K}->{N}"
    fl = 2.0 * M * K * N

    def fwd():
        with torch.no_grad():
            F.linear(x, w, b)

    report("linear forward", shape, time_op(fwd), fl)
    y = F.linear(x, w, b)
    report("linear backward", shape, time_op(grad_fn(y, (x, w, b), torch.randn_like(y))), 2 * fl)


def bench_attention(B, N, H, dh):
    if not wanted("attention"):
        return
    q, k, v = (torch.randn(B, H, N, dh, requires_grad=True) for _ in range(3))
    shape = f"B{B} N{N} D{H * dh} H{H}"
    fl = 4.0 * B * H * N * N * dh

    def fwd():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v)

    report("attention forward", shape, time_op(fwd), fl)
    y = F.scaled_dot_product_attention(q, k, v)
    report("attention backward", shape, time_op(grad_fn(y, (q, k, v), torch.randn_like(y))), 2 * fl)


def lola_channel_ln(x):
    var, mean = torch.var_mean(x, dim=1, keepdim=True)
    return (x - mean) * torch.rsqrt(var + 1e-5)


def bench_eltwise(B, C, HW):
    n = B * C * HW
    b2, b3 = 8.0 * n, 12.0 * n
    x = torch.randn(B, C, HW, requires_grad=True)
    dy = torch.randn(B, C, HW)
    if wanted("layernorm_channels"):
        shape = f"B{B} C{C} HW{HW}"

        def fwd():
            with torch.no_grad():
                lola_channel_ln(x)

        report("layernorm_channels fwd", shape, time_op(fwd), 0, b2)
        y = lola_channel_ln(x)
        report("layernorm_channels bwd", shape, time_op(grad_fn(y, (x,), dy)), 0, b3)
    if wanted("layernorm_tokens"):
        xt = torch.randn(B * HW, C, requires_grad=True)
        shape = f"M{B * HW} D{C}"

        def fwd():
            with torch.no_grad():
                F.layer_norm(xt, (C,))

        report("layernorm_tokens fwd", shape, time_op(fwd), 0, b2)
        y = F.layer_norm(xt, (C,))
        report("layernorm_tokens bwd", shape, time_op(grad_fn(y, (xt,), torch.randn_like(y))), 0, b3)
    if wanted("silu"):
        shape = f"n={n}"

        def fwd():
            with torch.no_grad():
                F.silu(x)

        report("silu forward", shape, time_op(fwd), 0, b2)
        y = F.silu(x)
        report("silu backward", shape, time_op(grad_fn(y, (x,), dy)), 0, b3)


def main():
    threads = ARGS.threads or int(os.environ.get("OMP_NUM_THREADS", "0")) or torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    clock = "process CPU" if ARGS.cputime else "wall"
    print(f"# bench-ops-torch: torch {torch.__version__} CPU, {threads} threads, "
          f"median of {ARGS.reps} calls, {clock} time")
    B = 2 if ARGS.quick else 8
    bench_conv(B, 64, 64, 64, 64, 3)
    bench_conv(B, 256, 256, 16, 16, 3)
    bench_conv(B, 512, 512, 16, 16, 1)
    bench_linear(320 if ARGS.quick else 1280, 1024, 4096)
    bench_attention(1 if ARGS.quick else 2, 320, 8, 64)
    bench_attention(1, 320 if ARGS.quick else 1280, 8, 64)
    bench_eltwise(B, 64, 64 * 64)


if __name__ == "__main__":
    main()
