"""Memory plan for SDXL Flash-DMD: which trainer options fit one 80 GB GPU, eight, or one 24 GB GPU.

    python benchmarks/memory_plan.py [--out benchmarks/results]

ESTIMATES, not measurements. Parameter counts are exact: each network is built from its published architecture on
PyTorch's `meta` device (no weights, no download) and counted. Bytes per parameter follow from the options (fp32
weights 4, bf16 2; gradients 4; Adam 8, bitsandbytes' 8-bit Adam 2; FSDP divides the trained states by the number of
GPUs). Activations are NOT included: they depend on resolution, batch and gradient checkpointing, and are what
`benchmarks/gpu_iteration.py` measures (peak memory) on a GPU. A plan "fits" here when its states leave at least
the stated headroom for activations. Writes `<out>/memory_plan.json` and `<out>/memory_plan.png`.
"""
from __future__ import annotations
import argparse, json
from pathlib import Path
import torch
from torch import nn

GiB = 2**30

# Published architectures (diffusers / transformers configs of the named checkpoints).
SDXL_UNET = dict(act_fn='silu', addition_embed_type='text_time', addition_embed_type_num_heads=64, addition_time_embed_dim=256,
                 attention_head_dim=[5, 10, 20], block_out_channels=[320, 640, 1280], cross_attention_dim=2048,
                 down_block_types=['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'], in_channels=4, layers_per_block=2,
                 out_channels=4, projection_class_embeddings_input_dim=2816, sample_size=128, transformer_layers_per_block=[1, 2, 10],
                 up_block_types=['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'], use_linear_projection=True)
SDXL_VAE = dict(block_out_channels=[128, 256, 512, 512], down_block_types=['DownEncoderBlock2D'] * 4, in_channels=3, latent_channels=4,
                layers_per_block=2, out_channels=3, sample_size=1024, up_block_types=['UpDecoderBlock2D'] * 4)
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77, vocab_size=49408)
CLIP_BIGG = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20, max_position_embeddings=77,
                 vocab_size=49408, projection_dim=1280)
SAM_B = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, global_attn_indexes=[2, 5, 8, 11])
SAM_H = dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, global_attn_indexes=[7, 15, 23, 31])
LORA_TARGETS = ('to_q', 'to_k', 'to_v', 'to_out.0')

def count(m: nn.Module) -> int: return sum(p.numel() for p in m.parameters())

def lora_params(unet: nn.Module, rank: int) -> int:
    "Parameters of rank-`rank` LoRA adapters on every attention projection (A: r x in, B: out x r)."
    return sum(rank * (mod.in_features + mod.out_features) for name, mod in unet.named_modules()
               if isinstance(mod, nn.Linear) and name.endswith(LORA_TARGETS))

def param_counts(lora_rank: int = 64) -> dict:
    from diffusers import UNet2DConditionModel, AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, SamVisionConfig
    from transformers.models.sam.modeling_sam import SamVisionEncoder
    with torch.device('meta'):
        unet = UNet2DConditionModel(**SDXL_UNET)
        out = {'unet': count(unet), 'vae': count(AutoencoderKL(**SDXL_VAE)),
               'text_encoders': count(CLIPTextModel(CLIPTextConfig(**CLIP_L))) + count(CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIGG))),
               'sam_vit_b': count(SamVisionEncoder(SamVisionConfig(**SAM_B))), 'sam_vit_h': count(SamVisionEncoder(SamVisionConfig(**SAM_H)))}
        out[f'lora_r{lora_rank}'] = lora_params(unet, lora_rank)
    return out

def plan(n: dict, lora_rank: int = 64) -> list[dict]:
    "GiB of weights, gradients and optimiser states per GPU for each option set (activations excluded)."
    U, L = n['unet'], n[f'lora_r{lora_rank}']
    def row(name, gpus, vram, options, trained, frozen_bytes, opt_bytes, te_on_gpu, lora=False, fsdp=1, sam='sam_vit_b'):
        per = {}
        if lora:      # student and fake: fp32 adapters with grads and Adam; their frozen bases are the teacher's tensors (share_frozen)
            per['student + fake score'] = 2 * L * (4 + 4 + opt_bytes) / GiB
        else:
            per['student + fake score'] = 2 * U * (4 + 4 + opt_bytes) / fsdp / GiB
        per['teacher'] = U * frozen_bytes / GiB
        per['VAE'] = n['vae'] * frozen_bytes / GiB
        per['SAM image encoder'] = n[sam] * frozen_bytes / GiB
        per['text encoders'] = n['text_encoders'] * frozen_bytes / GiB if te_on_gpu else 0.
        total = sum(per.values())
        head = vram - total
        return {'plan': name, 'gpus': gpus, 'gpu_memory_gib': vram, 'options': options, 'states_gib': per, 'total_gib': total,
                'headroom_for_activations_gib': head, 'fits': 'yes' if head >= (8 if vram <= 24 else 12) else 'tight' if head > 0 else 'no'}
    return [
        row('1 GPU, full fine-tune, fp32 Adam', 1, 80, 'mixed_precision=bf16 gradient_checkpointing=true', True, 4, 8, True),
        row('1 GPU, full fine-tune, 8-bit Adam', 1, 80, '... optimizer=adam8bit', True, 4, 2, True),
        row('1 GPU, full fine-tune, 8-bit Adam, bf16 frozen, prompts precomputed', 1, 80,
            '... optimizer=adam8bit frozen_dtype=bf16 text_encoders=precompute', True, 2, 2, False),
        row('8 GPUs FSDP, full fine-tune, fp32 Adam', 8, 80, 'sharding=fsdp mixed_precision=bf16 gradient_checkpointing=true (NPROC=8 or accelerate/8gpu_fsdp.yaml)',
            True, 4, 8, True, fsdp=8),
        row(f'1 GPU 24 GB, LoRA r{lora_rank}, bf16 frozen, prompts precomputed', 1, 24,
            f'lora_rank={lora_rank} frozen_dtype=bf16 mixed_precision=bf16 text_encoders=precompute gradient_checkpointing=true', True, 2, 8, False, lora=True),
        row(f'1 GPU 24 GB, LoRA r{lora_rank}, fp32 frozen', 1, 24, f'lora_rank={lora_rank} mixed_precision=bf16', True, 4, 8, True, lora=True),
    ]

def draw(res: dict, path: Path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = res['plans']
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.5))
    parts = list(rows[0]['states_gib'])
    left = [0.] * len(rows)
    for k in parts:
        v = [r['states_gib'][k] for r in rows]
        ax.barh(range(len(rows)), v, left=left, label=k); left = [a + b for a, b in zip(left, v)]
    for i, r in enumerate(rows): ax.plot([r['gpu_memory_gib']] * 2, [i - 0.4, i + 0.4], 'k-', lw=2)
    ax.set_yticks(range(len(rows)), [r['plan'] for r in rows], fontsize=8); ax.invert_yaxis()
    ax.set(xlabel='GiB per GPU (weights, gradients, optimiser states; activations not included). Black: GPU memory',
           title='SDXL Flash-DMD memory plan: ESTIMATES from parameter counts')
    ax.legend(fontsize=7, loc='lower right'); plt.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='benchmarks/results'); p.add_argument('--lora-rank', type=int, default=64)
    a = p.parse_args(argv)
    n = param_counts(a.lora_rank)
    res = {'benchmark': 'memory_plan', 'estimate': True, 'measured_on_gpu': False, 'param_counts': n,
           'assumptions': {'bytes': 'fp32 weights 4, bf16 2, gradients 4, Adam 8, 8-bit Adam 2 per trained parameter',
                           'activations': 'excluded: measure with benchmarks/gpu_iteration.py (peak memory) on a GPU',
                           'fits': "'yes': states leave >= 12 GiB (80 GB cards) or >= 8 GiB (24 GB cards) for activations; 'tight': less; 'no': states alone overflow",
                           'sam': 'ViT-B (sdxl.yaml default); ViT-H adds %.1f GiB in fp32' % ((n['sam_vit_h'] - n['sam_vit_b']) * 4 / GiB)},
           'plans': plan(n, a.lora_rank)}
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    (out / 'memory_plan.json').write_text(json.dumps(res, indent=1))
    draw(res, out / 'memory_plan.png')
    print({k: f'{v / 1e6:.1f}M' for k, v in n.items()})
    for r in res['plans']: print(f"{r['plan']:<75} {r['total_gib']:6.1f} GiB of {r['gpu_memory_gib']}  fits={r['fits']}")
    return res

if __name__ == '__main__':
    main()
