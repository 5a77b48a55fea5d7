#!/usr/bin/env python3
"""Generates tests/fixtures/unipc_flow.safetensors: diffusers'
UniPCMultistepScheduler as Wan2.1 configures it (use_flow_sigmas,
prediction_type flow_prediction, predict_x0, solver_type bh2,
lower_order_final, final_sigmas_type zero), transcribed from
src/diffusers/schedulers/scheduling_unipc_multistep.py of
github:huggingface/diffusers (the stored snapshot's HEAD; the flow branch of
set_timesteps, _sigma_to_alpha_sigma_t, convert_model_output,
multistep_uni_p_bh_update, multistep_uni_c_bh_update, step) with only the
branches this configuration takes. diffusers is not packaged for Debian; the
arithmetic is the same torch / numpy calls in the same order.

Cases: steps x flow_shift x solver_order x solver_type. Each replays seeded
random model outputs (the "velocity" of every step) from a seeded sample and
records timesteps, sigmas and the sample after every step.

Usage: /usr/bin/python3 scripts/reference/unipc_reference.py --out tests/fixtures/unipc_flow.safetensors
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_writer import write_safetensors  # noqa: E402


class UniPCFlow:
    def __init__(self, num_train_timesteps=1000, flow_shift=3.0, solver_order=2, solver_type="bh2",
                 lower_order_final=True, disable_corrector=()):
        self.num_train_timesteps, self.flow_shift = num_train_timesteps, flow_shift
        self.solver_order, self.solver_type = solver_order, solver_type
        self.lower_order_final, self.disable_corrector = lower_order_final, list(disable_corrector)
        self.predict_x0 = True

    def set_timesteps(self, num_inference_steps):
        sigmas = np.linspace(1, 1 / self.num_train_timesteps, num_inference_steps + 1)[:-1]
        sigmas = self.flow_shift * sigmas / (1 + (self.flow_shift - 1) * sigmas)
        eps = 1e-6
        if np.fabs(sigmas[0] - 1) < eps:
            sigmas[0] -= eps
        timesteps = (sigmas * self.num_train_timesteps).copy()
        sigmas = np.concatenate([sigmas, [0]]).astype(np.float32)
        self.sigmas = torch.from_numpy(sigmas)
        self.timesteps = torch.from_numpy(timesteps).to(dtype=torch.int64)
        self.num_inference_steps = len(timesteps)
        self.model_outputs = [None] * self.solver_order
        self.timestep_list = [None] * self.solver_order
        self.lower_order_nums = 0
        self.last_sample = None
        self.step_index = 0  # WanPipeline steps through the schedule from its start

    def _sigma_to_alpha_sigma_t(self, sigma):
        return 1 - sigma, sigma

    def convert_model_output(self, model_output, sample):
        sigma_t = self.sigmas[self.step_index]
        return sample - sigma_t * model_output

    def _coefficients(self, order, h):
        hh = -h if self.predict_x0 else h
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        factorial_i = 1
        B_h = hh if self.solver_type == "bh1" else torch.expm1(hh)
        return hh, h_phi_1, h_phi_k, factorial_i, B_h

    def uni_p(self, sample, order):
        m0 = self.model_outputs[-1]
        x = sample
        sigma_t, sigma_s0 = self.sigmas[self.step_index + 1], self.sigmas[self.step_index]
        alpha_t, sigma_t = self._sigma_to_alpha_sigma_t(sigma_t)
        alpha_s0, sigma_s0 = self._sigma_to_alpha_sigma_t(sigma_s0)
        lambda_t = torch.log(alpha_t) - torch.log(sigma_t)
        lambda_s0 = torch.log(alpha_s0) - torch.log(sigma_s0)
        h = lambda_t - lambda_s0
        rks, D1s = [], []
        for i in range(1, order):
            si = self.step_index - i
            mi = self.model_outputs[-(i + 1)]
            alpha_si, sigma_si = self._sigma_to_alpha_sigma_t(self.sigmas[si])
            lambda_si = torch.log(alpha_si) - torch.log(sigma_si)
            rk = (lambda_si - lambda_s0) / h
            rks.append(rk)
            D1s.append((mi - m0) / rk)
        rks.append(torch.ones(()))
        rks = torch.stack(rks)
        R, b = [], []
        hh, h_phi_1, h_phi_k, factorial_i, B_h = self._coefficients(order, h)
        for i in range(1, order + 1):
            R.append(torch.pow(rks, i - 1))
            b.append(h_phi_k * factorial_i / B_h)
            factorial_i *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial_i
        R = torch.stack(R)
        b = torch.stack(b)
        if len(D1s) > 0:
            D1s = torch.stack(D1s, dim=1)
            if order == 2:
                rhos_p = torch.ones(1, dtype=x.dtype) * 0.5
            else:
                rhos_p = torch.linalg.solve(R[:-1, :-1], b[:-1]).to(x.dtype)
        else:
            D1s = None
        x_t_ = sigma_t / sigma_s0 * x - alpha_t * h_phi_1 * m0
        pred_res = torch.einsum("k,bkc...->bc...", rhos_p, D1s) if D1s is not None else 0
        x_t = x_t_ - alpha_t * B_h * pred_res
        return x_t.to(x.dtype)

    def uni_c(self, this_model_output, last_sample, this_sample, order):
        m0 = self.model_outputs[-1]
        x, model_t = last_sample, this_model_output
        sigma_t, sigma_s0 = self.sigmas[self.step_index], self.sigmas[self.step_index - 1]
        alpha_t, sigma_t = self._sigma_to_alpha_sigma_t(sigma_t)
        alpha_s0, sigma_s0 = self._sigma_to_alpha_sigma_t(sigma_s0)
        lambda_t = torch.log(alpha_t) - torch.log(sigma_t)
        lambda_s0 = torch.log(alpha_s0) - torch.log(sigma_s0)
        h = lambda_t - lambda_s0
        rks, D1s = [], []
        for i in range(1, order):
            si = self.step_index - (i + 1)
            mi = self.model_outputs[-(i + 1)]
            alpha_si, sigma_si = self._sigma_to_alpha_sigma_t(self.sigmas[si])
            lambda_si = torch.log(alpha_si) - torch.log(sigma_si)
            rk = (lambda_si - lambda_s0) / h
            rks.append(rk)
            D1s.append((mi - m0) / rk)
        rks.append(torch.ones(()))
        rks = torch.stack(rks)
        R, b = [], []
        hh, h_phi_1, h_phi_k, factorial_i, B_h = self._coefficients(order, h)
        for i in range(1, order + 1):
            R.append(torch.pow(rks, i - 1))
            b.append(h_phi_k * factorial_i / B_h)
            factorial_i *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial_i
        R = torch.stack(R)
        b = torch.stack(b)
        D1s = torch.stack(D1s, dim=1) if len(D1s) > 0 else None
        if order == 1:
            rhos_c = torch.ones(1, dtype=x.dtype) * 0.5
        else:
            rhos_c = torch.linalg.solve(R, b).to(x.dtype)
        x_t_ = sigma_t / sigma_s0 * x - alpha_t * h_phi_1 * m0
        corr_res = torch.einsum("k,bkc...->bc...", rhos_c[:-1], D1s) if D1s is not None else 0
        D1_t = model_t - m0
        x_t = x_t_ - alpha_t * B_h * (corr_res + rhos_c[-1] * D1_t)
        return x_t.to(x.dtype)

    def step(self, model_output, timestep, sample):
        use_corrector = (self.step_index > 0 and self.step_index - 1 not in self.disable_corrector
                         and self.last_sample is not None)
        model_output_convert = self.convert_model_output(model_output, sample)
        if use_corrector:
            sample = self.uni_c(model_output_convert, self.last_sample, sample, self.this_order)
        for i in range(self.solver_order - 1):
            self.model_outputs[i] = self.model_outputs[i + 1]
            self.timestep_list[i] = self.timestep_list[i + 1]
        self.model_outputs[-1] = model_output_convert
        self.timestep_list[-1] = timestep
        if self.lower_order_final:
            this_order = min(self.solver_order, len(self.timesteps) - self.step_index)
        else:
            this_order = self.solver_order
        self.this_order = min(this_order, self.lower_order_nums + 1)
        self.last_sample = sample
        prev_sample = self.uni_p(sample, self.this_order)
        if self.lower_order_nums < self.solver_order:
            self.lower_order_nums += 1
        self.step_index += 1
        return prev_sample


CASES = [  # steps, flow_shift, solver_order, solver_type, lower_order_final
    (1, 3.0, 2, "bh2", True), (2, 3.0, 2, "bh2", True), (5, 3.0, 2, "bh2", True), (12, 3.0, 2, "bh2", True),
    (8, 5.0, 2, "bh2", True), (8, 1.0, 2, "bh2", True), (6, 3.0, 1, "bh2", True), (7, 3.0, 3, "bh2", True),
    (50, 5.0, 2, "bh2", True),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    gen = torch.Generator().manual_seed(20251126)
    shape = (1, 4, 2, 3, 3)
    tensors, cases = {}, []
    for n, (steps, shift, order, stype, lof) in enumerate(CASES):
        s = UniPCFlow(flow_shift=shift, solver_order=order, solver_type=stype, lower_order_final=lof)
        s.set_timesteps(steps)
        x = torch.randn(shape, generator=gen)
        tensors[f"case{n}.sample"] = x.clone()
        outs, samples = [], []
        for i, t in enumerate(s.timesteps):
            v = torch.randn(shape, generator=gen) + 0.5 * x
            outs.append(v)
            x = s.step(v, t, x)
            samples.append(x)
        tensors[f"case{n}.timesteps"] = s.timesteps
        tensors[f"case{n}.sigmas"] = s.sigmas
        tensors[f"case{n}.model_outputs"] = torch.stack(outs)
        tensors[f"case{n}.samples"] = torch.stack(samples)
        cases.append({"steps": steps, "flow_shift": shift, "solver_order": order, "solver_type": stype,
                      "lower_order_final": lof})
    write_safetensors(out, tensors, metadata={"cases": json.dumps(cases)})


if __name__ == "__main__":
    main()
