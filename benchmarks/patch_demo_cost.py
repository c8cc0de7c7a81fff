"""Cost of the pipeline calls proposed for the demo (64 grid samples of 256 µm on the 4096² synthetic slide).

CPU seconds (process time, all threads) and wall seconds of: the colour control at 1 µm/px; an untrained
ResNet-18 twin at 224 px (256/224 µm/px: one tile per sample) and at 128 px (2 µm/px); SimCLR training
(5 epochs, 96 px views, crops = the 128 px tiles split in 4); embedding the trained model and one twin.
Needs the slide made by ``bench_patch_emb.py --folder /tmp/tg_bench_patch``.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/patch_demo_cost.py > benchmarks/results/patch_demo_cost.json
"""
import sys, time, json, os, resource
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parent))
import torch
torch.set_num_threads(2)
import tissuegraph as tg
from bench_patch_emb import grid_samples_of
tg.settings.progress = False
p = '/tmp/tg_bench_patch/synthetic_4096.tiff'
s = grid_samples_of(p, patch_px=512)  # 256 µm grid samples, as the pipeline's default
out = {"n_samples": s.n_obs, "load": os.getloadavg()}
def t(name, fn):
    c0, w0 = time.process_time(), time.perf_counter()
    r = fn()
    out[name] = {"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0}
    return r
t("color_mpp1", lambda: tg.emb.color(s, p, mpp=1.0))
t("resnet18_twin_224_at_1.143", lambda: tg.emb.patches(s, p, model="resnet18", seed=0, mpp=256/224, size=224))
t("resnet18_twin_128_at_2", lambda: tg.emb.patches(s, p, model="resnet18", seed=0, mpp=2.0, size=128, key_added="c128"))
enc, card = t("simclr_train_5ep_96px_mpp2", lambda: tg.emb.train_patches(s, p, model="resnet18", mpp=2.0, size=96, epochs=5, batch_size=64, seed=0))
out["simclr_card"] = {"n_images": card["n_images"], "seconds_per_epoch": card["seconds_per_epoch"], "loss_log": card["loss_log"]}
t("simclr_embed_plus_twin_128", lambda: tg.emb.patches(s, p, model=enc, seeds=(0,), mpp=2.0, size=128))
out["load_end"] = os.getloadavg()
print(json.dumps(out, indent=1))
