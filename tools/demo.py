#!/usr/bin/env python
"""Segment your own images into your own classes.

    python tools/demo.py photo.jpg --vocabulary "sky, tree, person, road" \\
        --config-file configs/vitb_384_ahs.yaml --weights output/ahs_b16/model_final.pth
    python tools/demo.py 'photos/*.jpg' photos_dir/ --vocabulary-file cat_seg/data/class_names/ade150.json \\
        --config-file CFG --weights W --output demo_out --probabilities --device cuda

Inputs: image files, folders (their images, not recursive) and glob patterns, in any mix.
Vocabulary: ``--vocabulary`` takes comma-separated class names; ``--vocabulary-file`` a JSON list
of names, or any other file with one name per line (the benchmarks' class files under
cat_seg/data/class_names/ and a dataset description's class file work as they are; there an entry
"a, b" lists synonyms, the first of which is prompted and shown; two classes that share their
first synonym, as A-847's ten pairs, are kept with a warning: they score alike).

For every image ``<name>`` (its file name without the suffix, made a valid file name: characters
such as ``: * ? \\`` and control characters become ``_``, a leading dot is dropped, a name too long
for the file system is cut and ends with a hash; a name another input already has, in any case,
gets ``_2``, ``_3``...) it writes into ``--output``:

* ``<name>_overlay.png``: the prediction blended over the image, with a legend of the classes
  present below it (the picture is the image's width, its height plus the legend's);
* ``<name>_labels.png``: the label map at the image's size, pixel value = index of the class in
  the vocabulary (8-bit below 256 classes, else 16-bit), 255 (16-bit: 65535) where no class is
  present;
* with ``--probabilities``: ``<name>_probabilities/<index>_<class>.png``, the model's score of
  each class per pixel (sigmoid, 0-1 mapped to 0-255).

and once ``vocabulary.json``, the class list the label indices refer to. A picture that would
replace one of the input images (``--output`` the input folder, which holds ``x.png`` and an
earlier run's ``x_overlay.png``) stops the demo before any work: choose another folder.
Inference is :class:`cat_seg.Segmenter`'s (the Python API): by default the evaluation's test
protocol (its resize, then the sliding window with pooling [1, 1]), so the pictures show what
eval_ahs.sh measures; ``--mode whole`` segments the whole image in one view (faster, less
accurate).

Present: every class gets its own sigmoid score (not probabilities that share the pixel), so a
pixel takes the class with the highest score only when that score reaches ``--min-score``
(default 0.1, chosen on the quick-start model: cat_seg/predictor.py says why); elsewhere no
class of the vocabulary is present: unlabelled, left uncoloured (darkened) in the overlay, out of
the legend, counted as "unlabelled" in the figures printed. ``--min-score 0`` gives every pixel
its best class. A name alone scores lower than among others: name a few classes together.
Images larger than ``--max-side`` pixels (default 1600, as the web demo; 0: no limit) are
downscaled first, with a note: the pictures are then at that size.
The work is cat_seg.demo's (cat_seg/demo/images.py); this script parses the arguments and
reports what was written.
"""
import argparse
import os
from typing import List

from tqdm import tqdm

from cat_seg.demo.images import (
    DEFAULT_MAX_SIDE, build_demo_model, check_images, check_inputs_kept, check_max_side,
    find_images, ignored_weights_message, parse_vocabulary, run_demo, setup_cfg)
from cat_seg.predictor import DEFAULT_MIN_SCORE, MODES, Segmenter, check_min_score
from cat_seg.utils.console import prepare_entry_point
from cat_seg.utils.paths import check_output_dir


def main(argv=None) -> List[dict]:
    args = parse_args(argv)
    check_output_dir(args.output, "output folder (--output)")  # before any model work
    class_names = parse_vocabulary(args.vocabulary, args.vocabulary_file)
    paths = find_images(args.inputs)
    check_images(paths)
    check_inputs_kept(paths, args.output, class_names, args.probabilities)
    cfg = setup_cfg(args.config_file, args.opts, device=args.device, weights=args.weights,
                    allow_unexpected_weights=args.allow_unexpected_weights)
    model, ignored = build_demo_model(cfg)
    if ignored:
        print(f"[demo] {ignored_weights_message(ignored, cfg.MODEL.WEIGHTS)}")
    segmenter = Segmenter(model, cfg, ignored_weights=ignored)
    results = run_demo(segmenter, paths, class_names, args.output,
                       probabilities=args.probabilities, alpha=args.alpha, mode=args.mode,
                       max_side=args.max_side, min_score=args.min_score,
                       report=lambda note: tqdm.write(f"[demo] {note}"))
    for result in results:
        print(f"[demo] {result['image']} -> {result['overlay']}: "
              f"{present_text(result, class_names, args.min_score)}")
    print(f"[demo] {len(results)} image(s) written to {args.output} "
          f"(label indices: {os.path.join(args.output, 'vocabulary.json')})")
    return results


def present_text(result: dict, class_names: List[str], min_score: float) -> str:
    """"sky 60%, road 30%, unlabelled 10%", or why nothing is present."""
    if not result["fractions"]:
        return (f"no class present (no pixel scores {min_score:g} or more for any of the "
                f"{len(class_names)} names; highest score {result['top_score']:.2f})")
    shown = [f"{class_names[c].split(',')[0]} {100 * f:.0f}%"
             for c, f in sorted(result["fractions"].items(), key=lambda kv: -kv[1])]
    if result["unlabelled"] > 0:
        shown.append(f"unlabelled {100 * result['unlabelled']:.0f}% (no class scores "
                     f"{min_score:g} or more)")
    return ", ".join(shown)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[1:]))
    parser.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    vocabulary = parser.add_mutually_exclusive_group(required=True)
    vocabulary.add_argument("--vocabulary", help='comma-separated class names, "sky, tree, person"')
    vocabulary.add_argument("--vocabulary-file", help="JSON list of class names, or a text "
                            "file with one name per line")
    parser.add_argument("--config-file", required=True, help="the config the weights were trained with")
    parser.add_argument("--weights", help="checkpoint (.pth), or its http(s) URL / hf://owner/name/"
                        "file (downloaded once into the cache; an official CAT-Seg checkpoint is "
                        "converted there); default: the config's MODEL.WEIGHTS")
    parser.add_argument("--output", default="demo_output", help="folder for the pictures")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write one score map per class")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: the config's MODEL.DEVICE)")
    parser.add_argument("--mode", choices=MODES, default="sliding",
                        help="sliding: the evaluation's test protocol (default); whole: the whole "
                        "image in one view (faster, less accurate)")
    parser.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE,
                        help="sigmoid score a class needs to label a pixel (default "
                        f"{DEFAULT_MIN_SCORE}); below it no class is present there; 0: always "
                        "the best class")
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                        help=f"downscale larger images to this longer side first (default "
                        f"{DEFAULT_MAX_SIDE}, as the web demo; 0: no limit)")
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the class colours")
    parser.add_argument("--allow-unexpected-weights", action="store_true",
                        help="use a checkpoint of another config: its weights this model does not "
                        "have are ignored (and listed) instead of stopping the demo")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides KEY VALUE ..., last on the command line")
    args = parser.parse_args(argv)
    if not 0.0 <= args.alpha <= 1.0:
        parser.error("--alpha must be in [0, 1]")
    for check, value in ((check_min_score, args.min_score), (check_max_side, args.max_side)):
        try:
            check(value)
        except ValueError as error:
            parser.error(str(error))
    return args


if __name__ == "__main__":
    # Console logging; glibc's own malloc settings, not the trainer's keep-freed-memory ones
    # (cat_seg.utils.allocator): measured on the demo, those raise the peak (12-megapixel photo,
    # 150 names: 2.11 GB against 1.83 GB; 10,000 names: 9.3 GB against 6.2 GB), and a demo does
    # not repeat a training step's allocations.
    prepare_entry_point(allocator=False)
    try:
        main()
    except (OSError, ValueError) as error:
        raise SystemExit(f"[demo] {error}")
