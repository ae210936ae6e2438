#!/usr/bin/env python3
"""Train and export the sample PAN + XS semantic segmentation model of Seamless Inference.

The network is the one of the OTBTF pan + xs Keras tutorial (remicres/otbtf_keras_tutorial,
code/training.py): a small fully convolutional U-Net-like model fed with a PAN patch (input_p,
1 band) and a XS patch 4 times smaller (input_xs, 4 bands), built here with the Keras 3
functional API. It is trained on the Toulouse Quickbird images of sample/data/ against
labels.tif (a 6-class kNN map), and exported as a TensorFlow SavedModel (tag "serve",
signature "serving_default") with the otbtf ModelBase outputs:
``estimated`` and ``estimated_crop{16,32,64,96,128}``.

The model takes RAW digital numbers (float32); the normalisation (per-band standardisation with
constants computed on the training rows) is inside the model.

Deterministic: fixed seeds, op determinism, fixed patch order. Usage::

    .venv/bin/python sample/train_model.py [--data sample/data] [--out sample/model]
                                           [--epochs 15] [--seed 42]
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
from osgeo import gdal  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

gdal.UseExceptions()

ROOT = Path(__file__).resolve().parents[1]

NB_CLASSES = 6
CROPS = (16, 32, 64, 96, 128)
PAN_PSIZE = 64          # PAN patch size (pixels); XS patch is PAN_PSIZE // 4
XS_RATIO = 4            # PAN pixels per XS pixel
GRID_STEP = 16          # PAN patch grid step (multiple of 16: same stride phase as full-image inference)
HOLDOUT_FRACTION = 0.2  # bottom rows kept out of training
BATCH_SIZE = 16
LEARNING_RATE = 1e-3


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def read_image(path):
    """Read a raster as a (rows, cols, bands) numpy array."""
    ds = gdal.Open(str(path))
    arr = ds.ReadAsArray()
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    return np.ascontiguousarray(np.transpose(arr, (1, 2, 0)))


def load_data(data_dir):
    pan = read_image(data_dir / "pan.tif").astype(np.float32)
    xs = read_image(data_dir / "xs.tif").astype(np.float32)
    labels = read_image(data_dir / "labels.tif")[..., 0].astype(np.int32)
    if pan.shape[:2] != labels.shape:
        raise ValueError(f"pan {pan.shape} and labels {labels.shape} differ in size")
    if pan.shape[:2] != (xs.shape[0] * XS_RATIO, xs.shape[1] * XS_RATIO):
        raise ValueError(f"pan {pan.shape} is not {XS_RATIO} times xs {xs.shape}")
    if labels.min() < 0 or labels.max() >= NB_CLASSES:
        raise ValueError(f"labels must lie in 0..{NB_CLASSES - 1}")
    return pan, xs, labels


def holdout_row(n_rows):
    """First PAN row of the hold-out band (multiple of the XS ratio so that XS splits cleanly)."""
    row = int(round(n_rows * (1.0 - HOLDOUT_FRACTION)))
    return row - row % XS_RATIO


def extract_patches(pan, xs, labels, row_min, row_max):
    """Aligned patches on a fixed grid, fully inside PAN rows [row_min, row_max).

    PAN offsets are multiples of GRID_STEP (itself a multiple of 4), the XS patch starts at the
    PAN offset / 4. Order: row-major over the grid (fixed).
    """
    xs_psize = PAN_PSIZE // XS_RATIO
    p_list, x_list, l_list = [], [], []
    for y in range(row_min, row_max - PAN_PSIZE + 1, GRID_STEP):
        for x in range(0, pan.shape[1] - PAN_PSIZE + 1, GRID_STEP):
            p_list.append(pan[y:y + PAN_PSIZE, x:x + PAN_PSIZE])
            xy, xx = y // XS_RATIO, x // XS_RATIO
            x_list.append(xs[xy:xy + xs_psize, xx:xx + xs_psize])
            l_list.append(labels[y:y + PAN_PSIZE, x:x + PAN_PSIZE])
    return np.stack(p_list), np.stack(x_list), np.stack(l_list)


def augment_dihedral(p, x, l):
    """The 8 flips/rotations of every patch (PAN, XS and labels stay aligned). Fixed order."""
    ps, xs_, ls = [], [], []
    for k in range(4):
        for flip in (False, True):
            def t(a):
                a = np.rot90(a, k, axes=(1, 2))
                return a[:, :, ::-1] if flip else a
            ps.append(t(p))
            xs_.append(t(x))
            ls.append(t(l))
    return (np.ascontiguousarray(np.concatenate(ps)), np.ascontiguousarray(np.concatenate(xs_)),
            np.ascontiguousarray(np.concatenate(ls)))


# --------------------------------------------------------------------------------------------
# Model (OTBTF pan + xs tutorial topology)
# --------------------------------------------------------------------------------------------
def conv(inp, depth, name, strides=2):
    return keras.layers.Conv2D(filters=depth, kernel_size=3, strides=strides, activation="relu",
                               padding="same", name=name)(inp)


def tconv(inp, depth, name, activation="relu"):
    return keras.layers.Conv2DTranspose(filters=depth, kernel_size=3, strides=2,
                                        activation=activation, padding="same", name=name)(inp)


def build_model(p_mean, p_std, xs_mean, xs_std):
    """Return (training model with the 'estimated' output only, export model with the crops)."""
    input_p = keras.Input((None, None, 1), name="input_p", dtype="float32")
    input_xs = keras.Input((None, None, 4), name="input_xs", dtype="float32")
    inputs = {"input_p": input_p, "input_xs": input_xs}

    # Normalisation inside the model: (raw - mean) / std per band.
    p = keras.layers.Rescaling(scale=[float(1.0 / s) for s in p_std],
                               offset=[float(-m / s) for m, s in zip(p_mean, p_std)],
                               name="normalize_p")(input_p)
    xs = keras.layers.Rescaling(scale=[float(1.0 / s) for s in xs_std],
                                offset=[float(-m / s) for m, s in zip(xs_mean, xs_std)],
                                name="normalize_xs")(input_xs)

    cv1 = conv(p, 16, "conv1")                     # 1/2
    cv2 = conv(cv1, 32, "conv2")                   # 1/4
    cv_xs = conv(xs, 32, "conv_xs", strides=1)     # 1/4 (XS resolution)
    cv2 = keras.layers.Add(name="add_conv2_xs")([cv2, cv_xs])
    cv3 = conv(cv2, 64, "conv3")                   # 1/8
    cv4 = conv(cv3, 64, "conv4")                   # 1/16
    cv1t = keras.layers.Add(name="add_conv1t")([tconv(cv4, 64, "conv1t"), cv3])
    cv2t = keras.layers.Add(name="add_conv2t")([tconv(cv1t, 32, "conv2t"), cv2])
    cv3t = keras.layers.Add(name="add_conv3t")([tconv(cv2t, 16, "conv3t"), cv1])
    estimated = tconv(cv3t, NB_CLASSES, "estimated", activation="softmax")

    train_model = keras.Model(inputs=inputs, outputs=estimated, name="pan_xs_fcn_train")

    # otbtf ModelBase.postprocess_outputs convention: key "<key>_crop<c>" = out[:, c:-c, c:-c, :]
    outputs = {"estimated": estimated}
    for c in CROPS:
        outputs[f"estimated_crop{c}"] = keras.layers.Cropping2D(
            cropping=((c, c), (c, c)), name=f"estimated_crop{c}")(estimated)
    export_model = keras.Model(inputs=inputs, outputs=outputs, name="pan_xs_fcn")
    return train_model, export_model


# --------------------------------------------------------------------------------------------
# Evaluation on the whole image, with the exported SavedModel
# --------------------------------------------------------------------------------------------
def predict_whole_image(serving_fn, pan, xs):
    """One forward pass over the whole image: reflect-pad right/bottom to a multiple of 16."""
    rows, cols = pan.shape[:2]
    pr = (-rows) % 16
    pc = (-cols) % 16
    pan_p = np.pad(pan, ((0, pr), (0, pc), (0, 0)), mode="reflect")
    xs_p = np.pad(xs, ((0, pr // XS_RATIO), (0, pc // XS_RATIO), (0, 0)), mode="reflect")
    out = serving_fn(input_p=tf.constant(pan_p[np.newaxis], tf.float32),
                     input_xs=tf.constant(xs_p[np.newaxis], tf.float32))
    proba = out["estimated"].numpy()[0, :rows, :cols, :]
    return proba


def write_model_card(path, info):
    acc = info["acc"]
    lines = [
        "# Sample model card: `sample/model/`",
        "",
        "Small fully convolutional PAN + XS semantic segmentation network (6 classes), the topology of the",
        "OTBTF pan + xs Keras tutorial (`remicres/otbtf_keras_tutorial`, `code/training.py`), rebuilt with the",
        "Keras 3 functional API and exported as a TensorFlow SavedModel. It is a demo/test model for",
        "Seamless Inference, not a production classifier.",
        "",
        "## Format",
        "",
        "- TensorFlow SavedModel (Keras 3 `model.export`), tag `serve`, signature `serving_default`.",
        "- Inputs (float32, RAW digital numbers, spatial dims free):",
        "  - `input_p`: `[None, None, None, 1]`, Quickbird PAN at 0.6 m (values about 100..1600);",
        "  - `input_xs`: `[None, None, None, 4]`, Quickbird XS at 2.4 m (values about 90..720), covering the",
        "    same area as `input_p`: XS size = PAN size / 4, same upper-left corner.",
        "  - PAN height and width must be multiples of 16 (total stride of the encoder); XS = PAN / 4.",
        "- Outputs (float32, softmax probabilities of the 6 classes, at PAN resolution):",
        "  - `estimated`: `[None, H, W, 6]` (same size as `input_p`);",
        "  - `estimated_crop16`, `estimated_crop32`, `estimated_crop64`, `estimated_crop96`,",
        "    `estimated_crop128`: `estimated[:, c:-c, c:-c, :]` (otbtf `ModelBase` convention).",
        "- Classes: the values 0..5 of `sample/data/labels.tif` (a 6-class kNN classification of the XS image).",
        "  Class frequencies in labels.tif: " + ", ".join(
            f"{k}: {v:.3f}" for k, v in enumerate(info["class_freq"])) + ".",
        "- Receptive field / valid part: with `padding=\"same\"` the exact valid window of a PAN tile of size P",
        "  is [31, P-17] (TF puts the odd padding pixel after the data), so use `estimated_crop32` with a PAN receptive field of 128 and an",
        "  expression field of 64 for artifact-free tiling (tile origins on a multiple-of-16 grid).",
        "",
        "## Architecture",
        "",
        "All convolutions: kernel 3, `padding=\"same\"`, ReLU (except the softmax of `estimated`).",
        "",
        "```",
        "input_p  -> normalize_p  (Rescaling) -> conv1 (Conv2D 16, s2) -> conv2 (Conv2D 32, s2) --+",
        "input_xs -> normalize_xs (Rescaling) -> conv_xs (Conv2D 32, s1) -----------------------(+) = s2",
        "s2 -> conv3 (Conv2D 64, s2) -> conv4 (Conv2D 64, s2)",
        "conv4 -> conv1t (Conv2DTranspose 64, s2) (+ conv3)",
        "      -> conv2t (Conv2DTranspose 32, s2) (+ s2)",
        "      -> conv3t (Conv2DTranspose 16, s2) (+ conv1)",
        "      -> estimated (Conv2DTranspose 6, s2, softmax)",
        "estimated -> Cropping2D(c) -> estimated_crop{16,32,64,96,128}",
        "```",
        "",
        f"Trainable parameters: {info['n_params']}.",
        "",
        "## Normalisation (inside the model)",
        "",
        "Per band `(x - mean) / std`, as `keras.layers.Rescaling(scale=1/std, offset=-mean/std)`, with the",
        "mean and standard deviation of the training rows (PAN rows 0.."
        f"{info['holdout_row'] - 1}, XS rows 0..{info['holdout_row'] // XS_RATIO - 1}):",
        "",
        f"- PAN: mean {fmt_list(info['p_mean'])}, std {fmt_list(info['p_std'])}",
        f"- XS: mean {fmt_list(info['xs_mean'])}, std {fmt_list(info['xs_std'])}",
        "",
        "## Training",
        "",
        "- Data: `sample/data/` (Quickbird, Toulouse, Orfeo ToolBox 8.1.1 test data, Apache-2.0; see",
        "  `sample/data/README.md`).",
        f"- Patches: PAN {PAN_PSIZE}x{PAN_PSIZE}, XS {PAN_PSIZE // XS_RATIO}x{PAN_PSIZE // XS_RATIO}, labels "
        f"{PAN_PSIZE}x{PAN_PSIZE}, on a grid of step {GRID_STEP} PAN pixels",
        f"  (XS offset = PAN offset / 4), fully inside the training rows 0..{info['holdout_row'] - 1}: "
        f"{info['n_base_patches']} patches,",
        f"  x 8 flips/rotations = {info['n_train']} training patches.",
        f"- Spatial hold-out: PAN rows {info['holdout_row']}..{info['rows'] - 1} (bottom "
        f"{int(HOLDOUT_FRACTION * 100)}%), never seen in training.",
        "- Loss: sparse categorical cross-entropy on `estimated` only (no loss on the crops).",
        f"- Optimiser: Adam, learning rate {LEARNING_RATE}, batch {BATCH_SIZE}, {info['epochs']} epochs, "
        f"seed {info['seed']}.",
        "- Deterministic: `keras.utils.set_random_seed`, `tf.config.experimental.enable_op_determinism()`,",
        "  fixed patch order, seeded shuffling. Two runs give the same weights.",
        f"- Training wall time: {info['train_time']:.0f} s ({info['cpus']} CPU cores).",
        "",
        "## Accuracy",
        "",
        "Pixel accuracy of the argmax of `estimated` against `labels.tif`, computed with the exported SavedModel in",
        "one forward pass over the whole image (PAN 500 -> 512 and XS 125 -> 128 reflect-padded at the",
        "right/bottom, cropped back to 500x500):",
        "",
        "| area | pixel accuracy |",
        "|---|---|",
        f"| whole image (500x500) | {acc['whole']:.4f} |",
        f"| training rows 0..{info['holdout_row'] - 1} | {acc['train']:.4f} |",
        f"| held-out rows {info['holdout_row']}..{info['rows'] - 1} | {acc['holdout']:.4f} |",
        "",
        "The labels are themselves a kNN classification (not ground truth), so this measures how well the",
        "network reproduces that map.",
        "",
        "## How to regenerate",
        "",
        "```",
        ".venv/bin/python sample/train_model.py",
        "```",
        "",
        "Options: `--data DIR` (default `sample/data`), `--out DIR` (default `sample/model`), `--epochs N`,",
        "`--seed N`. The script also rewrites this card.",
        "",
    ]
    path.write_text("\n".join(lines))


def fmt_list(values):
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


# --------------------------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "sample" / "data",
                        help="folder with pan.tif, xs.tif, labels.tif (default: sample/data)")
    parser.add_argument("--out", type=Path, default=ROOT / "sample" / "model",
                        help="SavedModel output folder, replaced (default: sample/model)")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs (default: 15)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument("--card", type=Path, default=None,
                        help="model card to write (default: model_card.md next to --out)")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()

    pan, xs, labels = load_data(args.data)
    rows = pan.shape[0]
    h_row = holdout_row(rows)

    # Normalisation constants from the training rows only.
    p_train_px = pan[:h_row].reshape(-1, pan.shape[2]).astype(np.float64)
    xs_train_px = xs[:h_row // XS_RATIO].reshape(-1, xs.shape[2]).astype(np.float64)
    p_mean, p_std = p_train_px.mean(0), p_train_px.std(0)
    xs_mean, xs_std = xs_train_px.mean(0), xs_train_px.std(0)
    print(f"normalisation PAN: mean {fmt_list(p_mean)} std {fmt_list(p_std)}")
    print(f"normalisation XS:  mean {fmt_list(xs_mean)} std {fmt_list(xs_std)}")

    tp, tx, tl = extract_patches(pan, xs, labels, 0, h_row)
    n_base = len(tp)
    tp, tx, tl = augment_dihedral(tp, tx, tl)
    vp, vx, vl = extract_patches(pan, xs, labels, h_row, rows)
    print(f"patches: {n_base} training x 8 flips/rotations = {len(tp)}, {len(vp)} hold-out "
          f"(hold-out rows {h_row}..{rows - 1})")

    train_ds = (tf.data.Dataset.from_tensor_slices(({"input_p": tp, "input_xs": tx}, tl))
                .shuffle(len(tp), seed=args.seed, reshuffle_each_iteration=True)
                .batch(BATCH_SIZE))
    val_ds = tf.data.Dataset.from_tensor_slices(({"input_p": vp, "input_xs": vx}, vl)).batch(64)

    train_model, export_model = build_model(p_mean, p_std, xs_mean, xs_std)
    train_model.compile(optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE),
                        loss=keras.losses.SparseCategoricalCrossentropy(),
                        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
    n_params = train_model.count_params()
    print(f"model: {n_params} parameters")

    t0 = time.time()
    train_model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, shuffle=False, verbose=2)
    train_time = time.time() - t0
    print(f"training wall time: {train_time:.1f} s")

    # Export (no optimizer state: the export model only tracks the layers' variables).
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    export_model.export(str(out), format="tf_saved_model", verbose=False)

    # Check the signature and evaluate the exported artifact.
    loaded = tf.saved_model.load(str(out))
    fn = loaded.signatures["serving_default"]
    _, in_sig = fn.structured_input_signature
    print("signature inputs: " + ", ".join(f"{k} {v.dtype.name} {v.shape}" for k, v in sorted(in_sig.items())))
    print("signature outputs: " + ", ".join(
        f"{k} {v.dtype.name} {v.shape}" for k, v in sorted(fn.structured_outputs.items())))
    expected_out = {"estimated"} | {f"estimated_crop{c}" for c in CROPS}
    if set(in_sig) != {"input_p", "input_xs"} or set(fn.structured_outputs) != expected_out:
        raise SystemExit(f"the saved signature is not the expected one: {sorted(in_sig)} -> "
                         f"{sorted(fn.structured_outputs)}")

    proba = predict_whole_image(fn, pan, xs)
    pred = proba.argmax(-1)
    ok = pred == labels
    acc = {"whole": float(ok.mean()), "train": float(ok[:h_row].mean()),
           "holdout": float(ok[h_row:].mean())}
    print(f"pixel accuracy vs labels.tif: whole image {acc['whole']:.4f}, "
          f"training rows 0..{h_row - 1} {acc['train']:.4f}, "
          f"held-out rows {h_row}..{rows - 1} {acc['holdout']:.4f}")

    card = args.card or out.parent / "model_card.md"
    write_model_card(card, {
        "acc": acc, "n_params": n_params, "p_mean": p_mean, "p_std": p_std, "xs_mean": xs_mean,
        "xs_std": xs_std, "holdout_row": h_row, "rows": rows, "n_base_patches": n_base,
        "n_train": len(tp), "epochs": args.epochs, "seed": args.seed, "train_time": train_time,
        "cpus": os.cpu_count(), "class_freq": np.bincount(labels.ravel(), minlength=NB_CLASSES) / labels.size,
    })
    print(f"wrote {out} and {card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
