"""The browser demo's page and the work behind it (tools/web_demo.py starts the server).

Inference is :class:`cat_seg.predictor.Segmenter`'s, built as tools/demo.py builds it (the same
vocabulary checks, config, weight loading) and shared by every request without a lock: the
vocabulary belongs to each call. The overlay is tools/demo.py's (``labelled_overlay``); only the
image comes from memory. Bad input (no or a duplicate class name, a file that is not an image, a
model still loading) gives a message on the page, an unreadable upload as soon as it is uploaded
(:func:`check_upload`); an image larger than ``max_side`` is downscaled with a note. Changing the
image or the class names clears the previous result and says what the page now holds
(:func:`pending_status`), so no result, legend or message shows as current for inputs it was not
made from. The page names the model (config and weights) and what it was trained on
(:func:`describe_model`). gradio (an optional extra, requirements-demo.txt) is imported only by
:func:`build_app` and :func:`import_gradio`.
"""
import html
import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from ..inference.image_inputs import ImageTooLarge
from ..predictor import DEFAULT_MIN_SCORE, SegmentationResult, Segmenter
from ..utils.visualization import labelled_overlay, palette
from . import images

INSTALL_HINT = "pip install -r requirements-demo.txt   (or: pip install 'gradio>=6,<7')"
DEFAULT_MAX_SIDE = images.DEFAULT_MAX_SIDE  # tools/demo.py's --max-side default too
# (split, image index, vocabulary): scenes drawn exactly as datasets/synthetic/images/<split>/
# NNNNNN.jpg (same generator and seed) but saved losslessly; the indices pick scenes showing
# many classes.
EXAMPLE_SCENES = (
    ("unseen_val", 3, "held-out"),
    ("unseen_val", 6, "held-out"),
    ("seen_val", 6, "seen"),
    ("unseen_val", 0, "all"),
)

log = logging.getLogger(__name__)


class InputError(ValueError):
    """Something the user can fix on the page; its text is shown there."""


class ModelNotReady(RuntimeError):
    """The model is still loading, or failed to load; its text is shown on the page."""


# ---------------------------------------------------------------------------------- the model

class ModelSlot:
    """The demo's :class:`~cat_seg.predictor.Segmenter`, built in a background thread so the page
    answers at once.

    ``build()`` returns it; :meth:`get` hands it out once built and otherwise raises
    :class:`ModelNotReady` saying whether it is still loading or why loading failed. Requests
    call it concurrently: each call carries its own vocabulary.
    """

    def __init__(self, build: Callable[[], Segmenter]):
        self._build = build
        self._done = threading.Event()
        self._value = None
        self._error: Optional[str] = None
        self._started = time.monotonic()

    def start(self) -> "ModelSlot":
        self._started = time.monotonic()
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        return self

    def _load(self) -> None:
        try:
            self._value = self._build()
        except Exception as error:  # noqa: BLE001  (any failure is shown on the page)
            log.error("loading the model failed:\n%s", traceback.format_exc())
            self._error = f"{type(error).__name__}: {error}"
        finally:
            self._done.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """True once loading has finished (successfully or not)."""
        return self._done.wait(timeout)

    def get(self):
        if not self._done.is_set():
            raise ModelNotReady(
                f"The model is still loading ({time.monotonic() - self._started:.0f} s so far); "
                "press Segment again in a moment.")
        if self._error is not None:
            raise ModelNotReady(
                f"The model could not be loaded ({self._error}). Fix --config-file / --weights "
                "and restart tools/web_demo.py.")
        return self._value


@dataclass(frozen=True)
class ModelBuilder:
    """Builds the Segmenter of ``config_file`` + ``weights`` when called; the page reads what it
    loads from its fields (:func:`describe_model`)."""
    config_file: str
    weights: str
    device: Optional[str] = None
    opts: Tuple[str, ...] = ()

    def __call__(self) -> Segmenter:
        return Segmenter.from_config(self.config_file, self.weights, device=self.device,
                                     opts=list(self.opts))


def model_builder(config_file: str, weights: str, device: Optional[str] = None,
                  opts: Sequence[str] = ()) -> ModelBuilder:
    """The loader of tools/demo.py (config with the test protocol, model, strict weights)."""
    return ModelBuilder(config_file, weights, device, tuple(opts))


@dataclass
class ModelInfo:
    """What the page says about the model it serves (:func:`model_markdown`).

    config_file, weights: as given (shown relative to the repository when inside it, else by
    file name); training_sets: DATASETS.TRAIN; trained_names: their class names (the names the
    segmentation training saw); synthetic: every training set is the built-in synthetic world;
    caption_names: the world's other class names, which its miniature CLIP saw only in captions
    (when it was pretrained, pretrained/README.md); clip: the CLIP's architecture and initial
    weights; problem: why the config could not be read (then only the file names are known).
    """
    config_file: str
    weights: str
    training_sets: Tuple[str, ...] = ()
    trained_names: Tuple[str, ...] = ()
    synthetic: bool = False
    caption_names: Tuple[str, ...] = ()
    clip: Tuple[str, str] = ("", "")
    problem: Optional[str] = None


def describe_model(config_file: str, weights: str, opts: Sequence[str] = ()) -> ModelInfo:
    """Read ``config_file`` (with ``opts``) for what the page says about the model: its training
    sets and their class names, the synthetic world's, its CLIP. Never raises: a config that
    cannot be read gives a :class:`ModelInfo` with ``problem`` set (loading the model reports it
    in full)."""
    info = ModelInfo(config_file, weights)
    try:
        from detectron2.data import MetadataCatalog

        from .. import build_config
        from ..data.synthetic import ALL_CLASSES, UNSEEN_CLASSES
        from ..data.synthetic.register import SYNTHETIC_DATASETS

        cfg = build_config(config_file, list(opts), needs_data=False)
        try:
            from ..data import register_config_folder_datasets

            register_config_folder_datasets(cfg)
        except Exception:  # noqa: BLE001  (a folder dataset's names are then "not known")
            log.debug("folder datasets of %s not registered", config_file, exc_info=True)
        head = cfg.MODEL.SEM_SEG_HEAD
        info.clip = (str(head.CLIP_PRETRAINED), str(head.CLIP_WEIGHTS))
        info.training_sets = tuple(cfg.DATASETS.TRAIN)
        names: List[str] = []
        for dataset in info.training_sets:
            if dataset in SYNTHETIC_DATASETS:
                classes = [c.name for c in SYNTHETIC_DATASETS[dataset][1]]
            elif dataset in MetadataCatalog.list():
                classes = list(MetadataCatalog.get(dataset).get("stuff_classes", None) or [])
            else:
                classes = []
            names += [c for c in classes if c not in names]
        info.trained_names = tuple(names)
        info.synthetic = bool(info.training_sets) and all(
            d in SYNTHETIC_DATASETS for d in info.training_sets)
        if info.synthetic and info.clip[0] == "AHS-Tiny/16" and info.clip[1] != "random":
            # The held-out classes first (the examples show them), then the rest of the world.
            world = [c.name for c in UNSEEN_CLASSES + ALL_CLASSES]
            info.caption_names = tuple(dict.fromkeys(n for n in world if n not in names))
    except Exception as error:  # noqa: BLE001  (the page still names the files)
        info.problem = f"{type(error).__name__}: {error}"
    return info


def _shown_path(path: str) -> str:
    """``path`` relative to the repository when inside it, else its file name (a URL or hf://
    name: its last part)."""
    from ..utils.paths import repository_root

    if "://" not in path:
        root, absolute = os.path.abspath(repository_root()), os.path.abspath(path)
        try:
            if os.path.commonpath([root, absolute]) == root:
                return os.path.relpath(absolute, root)
        except ValueError:  # another drive (Windows)
            pass
    return os.path.basename(path.rstrip("/")) or path


def _name_list(names: Sequence[str], shown: int = 40) -> str:
    text = ", ".join(html.escape(n, quote=False) for n in names[:shown])
    return text + (f", … ({len(names)} in all)" if len(names) > shown else "")


def model_markdown(info: ModelInfo) -> str:
    """The page's paragraph on the model: its files, what it was trained on and which names it
    knows."""
    lines = [f"**Model:** config `{_shown_path(info.config_file)}`, weights "
             f"`{_shown_path(info.weights)}`."]
    if info.problem:
        lines.append(f"(Its config could not be read: {html.escape(info.problem, quote=False)}.)")
        return "\n\n".join(lines)
    sets = ", ".join(f"`{d}`" for d in info.training_sets) or "no dataset named in its config"
    architecture, clip_weights = info.clip
    if info.synthetic:
        text = (f"This model was trained on the synthetic world ({sets}); it knows: "
                f"{_name_list(info.trained_names)}.")
        if info.caption_names:
            text += (" Its miniature CLIP also learned these names from captions, never from a "
                     f"labelled pixel: {_name_list(info.caption_names)}. It knows no other word "
                     "and has never seen a photo: other names, and real photos, get guesses.")
        elif architecture == "AHS-Tiny/16":
            text += (" Its miniature CLIP started from random weights (CLIP_WEIGHTS random): "
                     "other names are guesses.")
        lines.append(text)
    elif info.trained_names:
        lines.append(f"This model was trained on {sets}, {len(info.trained_names)} class names: "
                     f"{_name_list(info.trained_names)}.")
    else:
        lines.append(f"This model was trained on {sets} (its class names are not known here).")
    if not info.synthetic and architecture == "AHS-Tiny/16":
        lines.append("Its miniature CLIP (AHS-Tiny/16) knows at most the synthetic world's class "
                     "names: other names are guesses.")
    elif not info.synthetic and architecture and clip_weights != "random":
        from ..utils.paths import resolve_repo_path

        if os.path.isfile(resolve_repo_path(clip_weights)):  # else an open_clip tag ("openai")
            clip_weights = _shown_path(resolve_repo_path(clip_weights))
        lines.append(f"Its CLIP ({html.escape(architecture, quote=False)}, weights "
                     f"{html.escape(clip_weights, quote=False)}) was pretrained on image–caption "
                     "pairs: other names work too, less reliably than the trained ones.")
    return "\n\n".join(lines)


# ---------------------------------------------------------------------------------- inputs

@dataclass
class BadUpload:
    """An upload the image component could not open (what its preprocessing raised)."""
    name: str
    reason: str


def parse_page_vocabulary(text: Optional[str]) -> List[str]:
    """Class names of the page's box (comma-separated), checked as the CLI checks them."""
    if not text or not text.replace(",", " ").strip():
        raise InputError("Type at least one class name in the class-name box, comma-separated, "
                         "e.g. \"sky, grass, road\".")
    try:
        return images.check_vocabulary(text.split(","), "class-name box")
    except ValueError as error:
        message = str(error)
        raise InputError(f"{message[:1].upper()}{message[1:]}.") from error


def read_upload(upload, max_side: int) -> Tuple[np.ndarray, Optional[str]]:
    """The uploaded image as uint8 RGB (H, W, 3), at most ``max_side`` pixels on its longer side,
    and a note when it had to be downscaled (else None)."""
    if upload is None:
        raise InputError("Upload an image first (or click one of the examples).")
    if isinstance(upload, BadUpload):
        raise InputError(f"{upload.name} is not an image this demo can read ({upload.reason}). "
                         "Upload a JPEG, PNG, WebP, BMP or TIFF picture.")
    name = os.path.basename(str(upload))
    try:
        # Upright by its EXIF orientation, as tools/demo.py reads a phone photo.
        image, orientation = images.read_demo_image(upload)
    except ImageTooLarge as error:  # Pillow refuses > ~179 megapixels (decompression bomb)
        raise InputError(f"{name} is too large to open safely: {error}.") from error
    except (ValueError, OSError) as error:
        raise InputError(f"{name} is not an image this demo can read ({error}). Upload a JPEG, "
                         "PNG, WebP, BMP or TIFF picture.") from error
    image, note = images.downscale(image, max_side)
    if orientation != 1:
        turned = (f"EXIF orientation {orientation} applied (the image is segmented upright, as "
                  "photo viewers show it).")
        note = turned if note is None else f"{turned} {note}"
    return image, note


@dataclass
class UploadCheck:
    """The current upload as checked when it arrived: ``problem`` (why it cannot be segmented, the
    page's message) or ``summary`` (its name and size, and any note)."""
    problem: Optional[str] = None
    summary: str = ""


def check_upload(upload, max_side: int) -> Optional[UploadCheck]:
    """Read the upload as segmenting will (:func:`read_upload`) the moment it arrives, so a file
    that is not an image is reported at once; None when there is no upload."""
    if upload is None:
        return None
    try:
        image, note = read_upload(upload, max_side)
    except InputError as error:
        return UploadCheck(problem=str(error))
    height, width = image.shape[:2]
    summary = f"{os.path.basename(str(upload))} ({width}×{height} px)"
    return UploadCheck(summary=f"{summary}. {note}" if note else summary)


def pending_status(check: Optional[UploadCheck], vocabulary: Optional[str]) -> str:
    """The status once the image or the class names changed (the previous result cleared): what
    is wrong with them, what is missing, or that they are ready to segment. Its headings are
    none of a segmentation's answers (:func:`status_text`, "Cannot segment:"), which it replaces."""
    problems, missing, names = [], [], []
    if check is None:
        missing.append("upload an image (or click one of the examples)")
    elif check.problem:
        problems.append(f"**Cannot segment this upload:** {check.problem}")
    if not vocabulary or not vocabulary.replace(",", " ").strip():
        missing.append("type the class names to look for, comma-separated")
    else:
        try:
            names = parse_page_vocabulary(vocabulary)
        except InputError as error:
            problems.append(f"**Cannot segment these class names:** {error}")
    lines = problems
    if missing:
        todo = " and ".join(missing)
        lines.append(f"**To segment:** {todo[:1].upper()}{todo[1:]}, then press **Segment**.")
    elif not problems:
        lines.append(f"**Ready:** {check.summary}, {len(names)} class "
                     f"name{'s' if len(names) != 1 else ''}. Press **Segment**.")
    return "\n\n".join(lines)


# ---------------------------------------------------------------------------------- segmenting

@dataclass
class Segmentation:
    """One segmented image, kept in the page's session so the opacity and the class of the
    probability view change without running the model again.

    image: uint8 (H, W, 3); result: the predictor's :class:`~cat_seg.predictor.SegmentationResult`
    (its label map, and the scores of one class computed when that class is shown: never all
    T × H × W at once); fractions: {class index: pixel fraction} of the classes present
    (tools/demo.py's figure).
    """
    image: np.ndarray
    result: SegmentationResult
    fractions: Dict[int, float]
    notes: List[str] = field(default_factory=list)

    @property
    def label(self) -> np.ndarray:
        return self.result.labels

    @property
    def class_names(self) -> List[str]:
        return self.result.class_names

    @property
    def seconds(self) -> float:
        return self.result.seconds

    def probabilities(self, index: int) -> np.ndarray:
        """uint8 (H, W): class ``index``'s scores as tools/demo.py writes them, round(255·s)."""
        return images.score_to_uint8(self.result.class_scores(index))

    def short_name(self, index: int) -> str:
        return self.class_names[index].split(",")[0]


def segment(slot: ModelSlot, upload, vocabulary: Optional[str], max_side: int,
            min_score: float = DEFAULT_MIN_SCORE) -> Segmentation:
    """Check the inputs, then segment the upload into the vocabulary with tools/demo.py's path
    (the predictor, ``min_score`` deciding what is present, as ``--min-score`` there).

    Raises :class:`InputError` / :class:`ModelNotReady` with the message for the page.
    """
    names = parse_page_vocabulary(vocabulary)
    image, note = read_upload(upload, max_side)
    notes = [note] if note else []
    long_vocabulary = images.vocabulary_note(names)
    if long_vocabulary:
        notes.append(long_vocabulary)
    result = slot.get()(image, names, min_score=min_score)
    return Segmentation(image, result, images.class_fractions(result.labels), notes)


def overlay_picture(seg: Segmentation, alpha: float) -> Image.Image:
    """The overlay tools/demo.py writes: (H + legend, W) with the classes present listed."""
    return labelled_overlay(seg.image, seg.label, seg.class_names, alpha=float(alpha))


def area_table(seg: Segmentation) -> str:
    """HTML table of the classes present, largest first: colour, name, area (% of pixels)."""
    colors = palette(len(seg.class_names))
    rows = []
    for index, fraction in sorted(seg.fractions.items(), key=lambda kv: -kv[1]):
        color = "#%02x%02x%02x" % tuple(int(v) for v in colors[index])
        name = html.escape(seg.short_name(index))
        rows.append(
            f'<tr data-class="{name}" data-percent="{100 * fraction:.2f}">'
            f'<td><span style="display:inline-block;width:1em;height:1em;background:{color};'
            f'border:1px solid #000"></span></td><td>{name}</td>'
            f'<td style="text-align:right">{100 * fraction:.1f}%</td></tr>')
    unlabelled = seg.result.unlabelled_fraction
    if unlabelled > 0:
        rows.append(
            f'<tr class="unlabelled" data-percent="{100 * unlabelled:.2f}"><td></td>'
            f'<td><i>none of these (score &lt; {seg.result.min_score:g})</i></td>'
            f'<td style="text-align:right">{100 * unlabelled:.1f}%</td></tr>')
    return ('<table class="areas"><thead><tr><th></th><th>class</th><th>area</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def probability_picture(seg: Segmentation, class_name: Optional[str]) -> Optional[np.ndarray]:
    """(H, W, 3) uint8 heat map (viridis: dark = 0, yellow = 1) of one class's score."""
    names = [seg.short_name(i) for i in range(len(seg.class_names))]
    if class_name not in names:
        return None
    from matplotlib import colormaps

    score = seg.probabilities(names.index(class_name))
    return (colormaps["viridis"](score)[..., :3] * 255).round().astype(np.uint8)


def status_text(seg: Segmentation) -> str:
    min_score = seg.result.min_score
    if seg.fractions:
        present = ", ".join(f"{seg.short_name(c)} {100 * f:.0f}%"
                            for c, f in sorted(seg.fractions.items(), key=lambda kv: -kv[1]))
        unlabelled = seg.result.unlabelled_fraction
        if unlabelled > 0:
            present += f"; none of these {100 * unlabelled:.0f}% (no class scores ≥ {min_score:g})"
    else:
        present = (f"none of these names (no pixel scores ≥ {min_score:g}; highest score "
                   f"{float(seg.result.top_scores.max()):.2f})")
    lines = [f"**Segmented** into {len(seg.class_names)} class names in {seg.seconds:.2f} s; "
             f"present: {present}."]
    lines += [f"**Note:** {note}" for note in seg.notes]
    return "\n\n".join(lines)


# ---------------------------------------------------------------------------------- the page

def _checked_image_class(gr):
    """gr.Image whose preprocessing turns an unreadable upload into a :class:`BadUpload`
    (a message on the page) instead of an exception (a bare "Error" toast)."""
    class CheckedImage(gr.Image):
        def get_block_name(self) -> str:
            return "image"  # rendered by gr.Image's frontend

        def preprocess(self, payload):
            try:
                return super().preprocess(payload)
            except Exception as error:  # noqa: BLE001  (PIL raises several kinds)
                name = getattr(payload, "orig_name", None) or "the upload"
                return BadUpload(name, f"{type(error).__name__}: {error}")
    return CheckedImage


def write_examples(folder: str) -> List[List[str]]:
    """Draw :data:`EXAMPLE_SCENES` into ``folder``; returns gr.Examples rows [path, vocabulary]."""
    from ..data.synthetic import SEEN_CLASSES, UNSEEN_CLASSES, render_scene
    from ..data.synthetic.storage import IMAGE_SIZE_RANGE, SEED, SPLITS

    vocabularies = {"held-out": [c.name for c in UNSEEN_CLASSES],
                    "seen": [c.name for c in SEEN_CLASSES],
                    "all": [c.name for c in UNSEEN_CLASSES + SEEN_CLASSES]}
    os.makedirs(folder, exist_ok=True)
    rows = []
    for split, index, vocabulary in EXAMPLE_SCENES:
        classes, code = SPLITS[split]
        image, _ = render_scene(classes, np.random.default_rng([SEED, code, index]),
                                *IMAGE_SIZE_RANGE)
        path = os.path.join(folder, f"{split}_{index:06d}.png")
        Image.fromarray(image).save(path)
        rows.append([path, ", ".join(vocabularies[vocabulary])])
    return rows


def build_app(slot: ModelSlot, examples: List[List[str]], max_side: int = DEFAULT_MAX_SIDE,
              min_score: float = DEFAULT_MIN_SCORE, model: Optional[ModelInfo] = None):
    """The gradio Blocks page; every handler answers with a status message, never raises.

    ``model``: what the page says about the model (:func:`describe_model`; None: nothing).
    Every handler runs in one queue (concurrency group "page", first come first served), so a
    change of the inputs is handled after a segmentation asked for before it, never before.
    """
    import gradio as gr

    CheckedImage = _checked_image_class(gr)

    def cleared(status):
        """Outputs of :func:`run` without a result, showing ``status``."""
        no_choice = gr.update(choices=[], value=None)
        return None, "", status, no_choice, None, None

    def run(upload, vocabulary, alpha):
        """-> overlay, area table, status, class choice, probability map, session state."""
        try:
            seg = segment(slot, upload, vocabulary, max_side, min_score)
        except (InputError, ModelNotReady) as error:
            return cleared(f"**Cannot segment:** {error}")
        except Exception as error:  # noqa: BLE001  (keep the page alive, log the details)
            log.error("segmentation failed:\n%s", traceback.format_exc())
            return cleared(f"**Cannot segment:** Segmentation failed: {type(error).__name__}: "
                           f"{error}")
        choices = [seg.short_name(i) for i in range(len(seg.class_names))]
        # The largest class present; with none present, the first name.
        chosen = seg.short_name(max(seg.fractions, key=seg.fractions.get, default=0))
        return (overlay_picture(seg, alpha), area_table(seg), status_text(seg),
                gr.update(choices=choices, value=chosen), probability_picture(seg, chosen), seg)

    def image_changed(upload, vocabulary):
        """A new (or removed) image: checked now; the previous result goes."""
        check = check_upload(upload, max_side)
        return cleared(pending_status(check, vocabulary)) + (check,)

    def vocabulary_changed(vocabulary, check):
        return cleared(pending_status(check, vocabulary))

    def restyle(alpha, seg):
        return overlay_picture(seg, alpha) if seg is not None else None

    def show_probability(class_name, seg):
        return probability_picture(seg, class_name) if seg is not None else None

    with gr.Blocks(title="AHS-Seg demo") as app:
        gr.Markdown("## AHS-Seg: open-vocabulary segmentation\nUpload an image, type the class "
                    "names to look for (comma-separated), press **Segment**. Each name gets its "
                    f"own score (0-1); a pixel takes the best name only where that score is at "
                    f"least {min_score:g}, elsewhere *none of these* (the photo, uncoloured). "
                    "Each class is tinted in its legend colour inside an outline of that colour.")
        if model is not None:
            gr.Markdown(model_markdown(model), elem_id="model")
        state = gr.State(None)
        upload_check = gr.State(None)
        with gr.Row():
            with gr.Column():
                image = CheckedImage(type="filepath", image_mode=None, sources=["upload"],
                                     label="Image", elem_id="image")
                vocabulary = gr.Textbox(label="Class names (comma-separated)", elem_id="vocabulary",
                                        placeholder="sky, grass, road")
                alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Opacity of the classes",
                                  elem_id="opacity")
                button = gr.Button("Segment", variant="primary", elem_id="segment")
                labels = [f"{split} #{i} ({kind} classes)" for split, i, kind in EXAMPLE_SCENES]
                gr.Examples(examples, inputs=[image, vocabulary], cache_examples=False,
                            example_labels=labels,
                            label="Synthetic examples (held-out classes: lava, ice, gravel, "
                                  "carpet, balloon, kite)")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                overlay = gr.Image(label="Segmentation", format="png", interactive=False,
                                   elem_id="overlay")
                areas = gr.HTML(elem_id="areas")
                chosen = gr.Dropdown(choices=[], label="Probabilities of class",
                                     elem_id="prob-class")
                probability = gr.Image(label="Probability (dark 0 → yellow 1)", format="png",
                                       interactive=False, elem_id="probability")
        outputs = [overlay, areas, status, chosen, probability, state]
        page = dict(concurrency_id="page")
        quiet = dict(page, show_progress="hidden", trigger_mode="always_last")
        button.click(run, [image, vocabulary, alpha], outputs, **page)
        vocabulary.submit(run, [image, vocabulary, alpha], outputs, **page)
        image.change(image_changed, [image, vocabulary], outputs + [upload_check], **quiet)
        vocabulary.change(vocabulary_changed, [vocabulary, upload_check], outputs, **quiet)
        # The opacity redraws the current result (kept scores): it stays current.
        alpha.change(restyle, [alpha, state], overlay, **quiet)
        chosen.input(show_probability, [chosen, state], probability, **page)
    return app


def import_gradio():
    try:
        import gradio
    except ImportError as error:
        raise SystemExit(f"[web_demo] the browser demo needs gradio, an optional extra: "
                         f"{INSTALL_HINT} ({error})") from error
    return gradio


def serve(build: Callable[[], Segmenter], examples_dir: str, *,
          host: str = "127.0.0.1", port: int = 7860, max_side: int = DEFAULT_MAX_SIDE,
          min_score: float = DEFAULT_MIN_SCORE) -> None:
    """Start loading the model of ``build`` (:func:`model_builder`) in the background, draw the
    examples into ``examples_dir`` and serve the page on ``host:port`` until interrupted; the page
    names the model of a :class:`ModelBuilder` (:func:`describe_model`).
    Gradio's usage analytics are the process's choice (``GRADIO_ANALYTICS_ENABLED``, which
    tools/web_demo.py sets to False before gradio is imported)."""
    gr = import_gradio()
    slot = ModelSlot(build).start()
    model = (describe_model(build.config_file, build.weights, build.opts)
             if isinstance(build, ModelBuilder) else None)
    app = build_app(slot, write_examples(examples_dir), max_side=max_side, min_score=min_score,
                    model=model)
    log.info("model loading in the background; page at http://%s:%d", host, port)
    # System fonts: the default theme would fetch Google fonts, which a closed network refuses.
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    app.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, theme=theme, show_error=True,
        ssr_mode=False, allowed_paths=[os.path.abspath(examples_dir)], max_file_size="200mb")
