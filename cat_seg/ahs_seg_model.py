"""AHSSeg: the meta-architecture (CLIP backbone -> AHS feature hooks -> CAT-Seg head -> losses / inference).

With the AHS modules off this is H-CLIP (``CLIP_FINETUNE oft_both``) or CAT-Seg
(``CLIP_FINETUNE attention``), computed as their reference implementations do: a module that is
off is not even built, so parameters, outputs and losses are exactly the baseline's.

One step, B images, T classes::

    images (uint8, RGB) -> CLIP-normalised, zero-padded to a common size (multiple of
        SIZE_DIVISIBILITY), resized to CLIP_RESOLUTION                        (B,3,R,R)
    backbone.encode_image -> dense (B,D,h,w), guidance [(B,W,h,w), ...]
    backbone.encode_text(vocabulary) -> text (T,P,D)
    AHS modules' feature hooks: dense -> dense'   (AFR: dense + α·(gate⊙dense − dense); training
        and every inference path)
    sem_seg_head(dense', text, guidance) -> logits (B,T,h',w')   (MODEL.SEM_SEG_HEAD.NAME:
        CATSegHead 4h x 4w, the default; PatchTextMatchingHead h x w, the feature-matching baseline)
    training: {"loss_sem_seg": BCE-with-logits against one-hot labels} plus each AHS module's
              losses (AFR "loss_rectify", HPA "loss_proto", SDR "loss_distill")
    inference: sigmoid scores (T,H,W) at the original size, whole image or sliding window;
               :meth:`AHSSeg.inference` takes the text embeddings from its caller and returns
               them as :class:`~cat_seg.inference.ScoreMaps` (resized a few classes at a time)

The AHS modules are driven through their contract (:mod:`cat_seg.modeling.hyperspherical.contract`):
this file never names one; the config's switches decide which are built.

The vocabulary is the training dataset's ``stuff_classes`` in training; at test time the
``prompt_classes`` (PAS-20b) or else ``stuff_classes`` of the dataset named by each input's
``"dataset_name"``, unless :meth:`AHSSeg.set_vocabulary` fixed one. :meth:`AHSSeg.inference`
(what :class:`cat_seg.predictor.Segmenter` calls) uses no vocabulary state: the caller hands it
the text embeddings of its own class names.
"""
import contextlib
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, SEM_SEG_HEADS_REGISTRY
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import ImageList
from torch import nn

from .inference.score_maps import ScoreMaps
from .modeling.clip import build_clip_backbone
from .modeling import head  # noqa: F401  (registers the heads MODEL.SEM_SEG_HEAD.NAME chooses from)
from .data.vocabulary import dataset_vocabulary
from .engine.train_loop import AMP_PRECISIONS
from .modeling.hyperspherical import AHSContext, AHSModule, build_ahs_modules
from .modeling.segmentation_loss import upsampled_bce_with_logits
from .utils.device import module_device


# TEST.PRECISION -> autocast dtype of inference (None: plain float32); the autocast precisions
# are training's (SOLVER.AMP.PRECISION).
TEST_PRECISIONS = {"float32": None, **AMP_PRECISIONS}


@META_ARCH_REGISTRY.register()
class AHSSeg(nn.Module):
    """Open-vocabulary semantic segmentation: CLIP backbone + CAT-Seg head."""

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        sem_seg_head: nn.Module,
        train_dataset: Optional[str],
        ignore_value: int = 255,
        size_divisibility: int = 32,
        sliding_window: bool = False,
        sliding_window_crop: int = 384,
        sliding_window_overlap: float = 0.333,
        sliding_window_out_res: Sequence[int] = (640, 640),
        test_precision: str = "float32",
        ahs_modules: Optional[Dict[str, AHSModule]] = None,
    ):
        """
        Args:
            backbone: the CLIP backbone (``encode_image``, ``encode_text``, ``pixel_mean``,
                ``pixel_std``, ``resolution``).
            sem_seg_head: the head (CAT-Seg's by default), built for that backbone.
            train_dataset: name of the training dataset, whose ``stuff_classes`` are the
                training vocabulary (None: the model cannot train).
            ignore_value: label of unlabelled pixels.
            size_divisibility: images of a batch are zero-padded (after normalisation) to a
                common size that is a multiple of this, before the resize to CLIP's resolution.
            sliding_window: test by sliding window instead of on the whole image.
            sliding_window_crop: crop side (pixels of the image resized to ``out_res``).
            sliding_window_overlap: overlap of neighbouring crops, in [0, 1).
            sliding_window_out_res: (H, W) the image is resized to before it is cut.
            test_precision: ``"float32"``, or ``"bfloat16"`` / ``"float16"``: inference under
                autocast in that precision (scores are returned in float32 either way).
            ahs_modules: the AHS modules that are on, by their ``attribute`` (the submodule
                name, hence their checkpoint prefix), in registry order.
        """
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.train_dataset = train_dataset
        self.ignore_value = ignore_value
        self.size_divisibility = size_divisibility
        self.sliding_window = sliding_window
        self.sliding_window_crop = sliding_window_crop
        self.sliding_window_overlap = sliding_window_overlap
        self.sliding_window_out_res = tuple(sliding_window_out_res)
        if test_precision not in TEST_PRECISIONS:
            raise ValueError(f"TEST.PRECISION={test_precision!r}; use one of "
                             f"{sorted(TEST_PRECISIONS)}")
        self.test_precision = test_precision
        # CLIP's normalisation constants (0-255 scale); fixed, so not part of checkpoints.
        self.register_buffer("pixel_mean", torch.tensor(backbone.pixel_mean).view(3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(backbone.pixel_std).view(3, 1, 1),
                             persistent=False)
        self._vocabulary_override: Optional[List[str]] = None
        # Plain attributes, assigned only when on, so a module that is off adds no parameter,
        # buffer or key, and a module's checkpoint keys are "<attribute>.*" as they always were.
        for attribute, module in (ahs_modules or {}).items():
            if not isinstance(module, AHSModule) or attribute != module.attribute:
                raise ValueError(f"ahs_modules[{attribute!r}] must be an AHSModule whose "
                                 "attribute is that name (see build_ahs_modules)")
            setattr(self, attribute, module)
        # The trainer's iteration (SDR's schedule), set before every step by ModelIterationHook;
        # not model state: on resume it comes back with the trainer's own iteration.
        self.iteration = 0

    @classmethod
    def from_config(cls, cfg):
        backbone = build_clip_backbone(cfg)
        head = SEM_SEG_HEADS_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.NAME)(cfg, backbone)
        train_dataset = cfg.DATASETS.TRAIN[0] if len(cfg.DATASETS.TRAIN) else None
        return {
            "ahs_modules": build_ahs_modules(cfg, backbone, train_dataset),
            "backbone": backbone,
            "sem_seg_head": head,
            "train_dataset": train_dataset,
            "ignore_value": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "size_divisibility": cfg.MODEL.SEM_SEG_HEAD.SIZE_DIVISIBILITY,
            "sliding_window": cfg.TEST.SLIDING_WINDOW,
            "sliding_window_crop": cfg.TEST.SLIDING_WINDOW_CROP,
            "sliding_window_overlap": cfg.TEST.SLIDING_WINDOW_OVERLAP,
            "sliding_window_out_res": tuple(cfg.TEST.SLIDING_WINDOW_OUT_RES),
            "test_precision": cfg.TEST.PRECISION,
        }

    @property
    def ahs_modules(self) -> Dict[str, AHSModule]:
        """The AHS modules that are on, by attribute, in registry order (= assignment order)."""
        return {name: module for name, module in self.named_children()
                if isinstance(module, AHSModule)}

    def set_iteration(self, iteration: int) -> None:
        """The trainer's current iteration (the modules' schedules, e.g. SDR's weight w(t))."""
        self.iteration = int(iteration)

    @property
    def device(self) -> torch.device:
        return module_device(self)

    # ------------------------------------------------------------------ vocabulary
    def set_vocabulary(self, class_names: Optional[Sequence[str]]) -> None:
        """Segment into ``class_names`` at test time, whatever the inputs' dataset; None: undo.

        Training always uses the training dataset's classes (the labels index them).
        """
        if class_names is not None:
            if isinstance(class_names, str) or not len(class_names):
                raise ValueError("set_vocabulary expects a non-empty list of class names")
            class_names = [str(name) for name in class_names]
        self._vocabulary_override = class_names

    def vocabulary(self, batched_inputs: Sequence[Dict]) -> List[str]:
        """The class names of this batch (see the module docstring for where they come from)."""
        if self.training:
            if self.train_dataset is None:
                raise ValueError("the model trains but DATASETS.TRAIN is empty; name the "
                                 "training dataset, whose stuff_classes are the vocabulary")
            return dataset_vocabulary(self.train_dataset)
        if self._vocabulary_override is not None:
            return self._vocabulary_override
        names = {x.get("dataset_name") for x in batched_inputs}
        if None in names:
            raise ValueError(
                "no vocabulary for inference: the inputs carry no 'dataset_name' (whose "
                "stuff_classes would be used) and none was set; call "
                "model.set_vocabulary([...class names...]) or add 'dataset_name' to each input")
        if len(names) > 1:
            raise ValueError(f"one batch mixes datasets {sorted(names)}, whose vocabularies "
                             "differ; batch the images of each dataset separately")
        return dataset_vocabulary(names.pop())

    # ------------------------------------------------------------------ steps
    def preprocess(self, images: Sequence[torch.Tensor]
                   ) -> Tuple[torch.Tensor, List[Tuple[int, int]], Tuple[int, int]]:
        """(3,H_i,W_i) RGB images (0-255) -> CLIP input (B,3,R,R), unpadded sizes, padded size.

        As CAT-Seg: normalise, zero-pad to a common size divisible by ``size_divisibility``,
        resize (bilinear) the padded batch to CLIP's resolution.
        """
        normalised = [(x.to(self.device, torch.float32) - self.pixel_mean) / self.pixel_std
                      for x in images]
        batch = ImageList.from_tensors(normalised, self.size_divisibility)
        resolution = self.backbone.resolution
        clip_images = F.interpolate(batch.tensor, size=(resolution, resolution),
                                    mode="bilinear", align_corners=False)
        return clip_images, batch.image_sizes, tuple(batch.tensor.shape[-2:])

    def extract_features(self, clip_images: torch.Tensor
                         ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """CLIP input (B,3,R,R) -> dense embeddings (B,D,h,w), guidance [(B,W,h,w), ...]."""
        return self.backbone.encode_image(clip_images)

    def apply_feature_hooks(self, dense: torch.Tensor
                            ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], Dict[str, object]]:
        """dense (B,D,h,w) through every AHS module's feature hook, in registry order.

        Returns the final (B,D,h,w) features, and by module attribute the input of its hook and
        the state it returned (its losses may need them)."""
        inputs, states = {}, {}
        for attribute, module in self.ahs_modules.items():
            if module.has_feature_hook():
                inputs[attribute] = dense
                dense, states[attribute] = module.feature_hook(dense)
        return dense, inputs, states

    def segment(self, clip_images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """CLIP input (B,3,R,R), text embeddings (T,P,D) -> logits (B,T,4h,4w).

        The test-time path of every inference mode (whole image, each sliding-window view)."""
        dense, guidance = self.extract_features(clip_images)
        return self.sem_seg_head(self.apply_feature_hooks(dense)[0], text, guidance)

    def training_losses(self, clip_images: torch.Tensor, text: torch.Tensor,
                        targets: torch.Tensor, class_names: Sequence[str]
                        ) -> Dict[str, torch.Tensor]:
        """One training step's losses, each logged under its own name (all already weighted).

        Args:
            clip_images: (B,3,R,R) CLIP input; targets: (B,H,W) labels of the same extent.
            text: (T,P,D) text embeddings of ``class_names``, the training vocabulary.
        """
        dense, guidance = self.extract_features(clip_images)
        rectified, hook_inputs, hook_states = self.apply_feature_hooks(dense)
        losses = self.losses(self.sem_seg_head(rectified, text, guidance), targets)
        context = AHSContext(
            images=clip_images, features=dense, rectified=rectified, guidance=guidance, text=text,
            targets=targets, class_names=list(class_names), iteration=self.iteration,
            backbone=self.backbone, hook_inputs=hook_inputs, hook_states=hook_states)
        # Hook modules first, then the others: the order the trainer sums the losses in, as in
        # earlier releases (a seed gives the same numbers bit for bit).
        modules = sorted(self.ahs_modules.values(), key=lambda m: not m.has_feature_hook())
        for module in modules:
            for name, value in module.losses(context).items():
                if name in losses:
                    raise ValueError(f"{type(module).__name__} returns loss {name!r}, which "
                                     "another part of the model already returns; rename it")
                losses[name] = value
        return losses

    def losses(self, logits: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        """CAT-Seg's loss: mean BCE-with-logits of every class at every label pixel.

        ``logits`` (B,T,h',w') are upsampled (bilinear) to the labels (B,H,W). The target of
        class c at a pixel is 1 where the label is c; pixels labelled ``ignore_value`` have
        target 0 for every class and stay in the mean, exactly as in CAT-Seg / H-CLIP.
        """
        num_classes = logits.shape[1]
        valid = targets != self.ignore_value
        bad = targets[valid & ((targets < 0) | (targets >= num_classes))]
        if bad.numel():
            raise ValueError(
                f"label value {int(bad[0])} is neither a class index of the {num_classes}-class "
                f"training vocabulary nor the ignore value {self.ignore_value}; check the "
                "dataset's stuff_classes and MODEL.SEM_SEG_HEAD.IGNORE_VALUE")
        # A few classes at a time: the (B, T, H, W) upsampled scores and targets are never
        # allocated whole (segmentation_loss.py says what that saves).
        return {"loss_sem_seg": upsampled_bce_with_logits(logits, targets, self.ignore_value)}

    def forward(self, batched_inputs: List[Dict]):
        """
        Args:
            batched_inputs: detectron2 records; "image" (3,H,W) RGB 0-255; in training
                "sem_seg" (H,W) labels; at test time optionally "height", "width" (output size)
                and "dataset_name" (whose vocabulary to use).

        Returns:
            training: {"loss_sem_seg", and the losses of the AHS modules that are on:
            scalars}; inference: [{"sem_seg": (T, height, width)
            sigmoid scores}] per input.
        """
        class_names = self.vocabulary(batched_inputs)
        text = self.backbone.encode_text(class_names)
        if self.training:
            clip_images, _, _ = self.preprocess([x["image"] for x in batched_inputs])
            targets = torch.stack([x["sem_seg"] for x in batched_inputs]).to(self.device)
            return self.training_losses(clip_images, text, targets, class_names)
        # Every class at once at the output size: what evaluators consume.
        return [{"sem_seg": maps.scores()} for maps in self.inference(batched_inputs, text)]

    # ------------------------------------------------------------------ inference
    def precision_context(self):
        """The autocast context of TEST.PRECISION; float32 enters none (a caller's stays in
        force)."""
        dtype = TEST_PRECISIONS[self.test_precision]
        return (torch.autocast(self.device.type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())

    def inference(self, batched_inputs: List[Dict], text: torch.Tensor,
                  sliding_window: Optional[bool] = None,
                  views_per_pass: Optional[int] = None) -> List[ScoreMaps]:
        """The test-time path with the vocabulary's text embeddings given by the caller.

        Args:
            batched_inputs: records with "image" (3,H,W) RGB 0-255 and optionally "height",
                "width" (the output size).
            text: (T,P,D) text embeddings (``backbone.encode_text(class_names)``).
            sliding_window: the sliding window (True) or the whole image (False); None: the
                config's TEST.SLIDING_WINDOW.
            views_per_pass: sliding window only: how many of an image's views (crops and the
                global view) go through the model at once; None: all (the evaluation's). Fewer
                bound the head's memory, which grows with views × classes, at the cost of float
                rounding (~1e-6: convolutions of another batch size).

        Returns:
            per input, its (T, height, width) sigmoid scores as :class:`ScoreMaps`: the model has
            run (logits at its resolution), the resizes to the output size run when scores are
            asked for, for all classes or a few at a time, in TEST.PRECISION, as float32.

        Nothing here depends on state set by another call, so threads may call it at once with
        different vocabularies.
        """
        if sliding_window is None:
            sliding_window = self.sliding_window
        with self.precision_context():
            if sliding_window:
                return [self.inference_sliding_window(x, text, views_per_pass)
                        for x in batched_inputs]
            return self.inference_whole_image(batched_inputs, text)

    def _deferred(self, num_classes: int, size: Tuple[int, int],
                  compute: Callable[[slice], torch.Tensor], bytes_per_class: int) -> ScoreMaps:
        """:class:`ScoreMaps` whose ``compute`` runs in TEST.PRECISION and returns float32:
        evaluators and demos see float32 scores whatever the arithmetic was."""
        def in_precision(classes: slice) -> torch.Tensor:
            with self.precision_context():
                return compute(classes).float()
        return ScoreMaps(num_classes, size, in_precision, bytes_per_class)

    def inference_whole_image(self, batched_inputs: List[Dict], text: torch.Tensor
                              ) -> List[ScoreMaps]:
        """The batch resized to CLIP's resolution in one view -> per image (T,height,width)."""
        clip_images, image_sizes, padded_size = self.preprocess(
            [x["image"] for x in batched_inputs])
        logits = self.segment(clip_images, text)  # (B, T, 4h, 4w)
        results = []
        for logit, size, x in zip(logits, image_sizes, batched_inputs):
            height, width = x.get("height", size[0]), x.get("width", size[1])

            def compute(classes: slice, logit=logit, size=tuple(size), height=height,
                        width=width) -> torch.Tensor:
                score = logit[classes].sigmoid()
                if size == padded_size:
                    # The scores cover exactly the image: one resize to the output size (CAT-Seg).
                    size = score.shape[-2:]
                else:
                    # The image is only part of the padded batch the scores cover: bring them to
                    # the padded size so that sem_seg_postprocess crops the image's own pixels.
                    score = F.interpolate(score[None], size=padded_size, mode="bilinear",
                                          align_corners=False)[0]
                return sem_seg_postprocess(score, size, height, width)

            per_class = 4 * (2 * height * width + padded_size[0] * padded_size[1])
            results.append(self._deferred(logits.shape[1], (height, width), compute, per_class))
        return results

    def inference_sliding_window(self, record: Dict, text: torch.Tensor,
                                 views_per_pass: Optional[int] = None) -> ScoreMaps:
        """CAT-Seg's sliding-window inference of one image -> its (T, height, width) scores.

        The image is resized to ``out_res`` and cut into crops of ``crop`` pixels with stride
        ``int(crop·(1 - overlap))``; the crops and a global view (the whole image resized to one
        crop) go through the model as one batch. Crop scores (sigmoid, at crop size) are
        averaged where crops overlap, then averaged 1:1 with the global view's scores (resized
        to ``out_res``), then resized to the output size. The model runs here; the merging and
        resizing run per class when the :class:`ScoreMaps` is asked for scores.
        """
        kernel = self.sliding_window_crop
        stride = int(kernel * (1 - self.sliding_window_overlap))
        out_res = self.sliding_window_out_res
        if stride <= 0 or kernel > min(out_res):
            raise ValueError(
                f"sliding window: crops of {kernel} px (TEST.SLIDING_WINDOW_CROP) with overlap "
                f"{self.sliding_window_overlap} need a positive stride and OUT_RES "
                f"{list(out_res)} at least as large as a crop")
        # How many crops cover each pixel of the resized image.
        coverage = F.fold(F.unfold(torch.ones(1, 1, *out_res, device=self.device), kernel,
                                   stride=stride), out_res, kernel, stride=stride)
        if not bool((coverage > 0).all()):
            raise ValueError(
                f"sliding-window crops of {kernel} px with stride {stride} do not cover "
                f"TEST.SLIDING_WINDOW_OUT_RES={list(out_res)}; choose OUT_RES = crop + "
                "n·stride (e.g. 640 for 384 px crops with overlap 0.333)")
        image = record["image"].to(self.device, torch.float32).unsqueeze(0)
        resized = F.interpolate(image, size=out_res, mode="bilinear", align_corners=False)
        crops = F.unfold(resized, kernel_size=kernel, stride=stride)  # (1, 3·k·k, L)
        crops = crops[0].T.reshape(-1, 3, kernel, kernel)
        global_view = F.interpolate(image, size=(kernel, kernel), mode="bilinear",
                                    align_corners=False)
        views = (torch.cat([crops, global_view]) - self.pixel_mean) / self.pixel_std
        resolution = self.backbone.resolution
        views = F.interpolate(views, size=(resolution, resolution), mode="bilinear",
                              align_corners=False)
        step = len(views) if views_per_pass is None else max(1, int(views_per_pass))
        logits = (self.segment(views, text) if step >= len(views) else torch.cat(
            [self.segment(views[i:i + step], text) for i in range(0, len(views), step)])
        )  # (L + 1, T, 4h, 4w)
        height = record.get("height", out_res[0])
        width = record.get("width", out_res[1])

        def compute(classes: slice) -> torch.Tensor:
            scores = F.interpolate(logits[:, classes], size=(kernel, kernel), mode="bilinear",
                                   align_corners=False).sigmoid()  # (L + 1, c, k, k)
            crop_scores = scores[:-1].flatten(1).T.unsqueeze(0)  # (1, c·k·k, L)
            merged = F.fold(crop_scores, out_res, kernel, stride=stride) / coverage
            global_scores = F.interpolate(scores[-1:], size=out_res, mode="bilinear",
                                          align_corners=False)
            merged = (merged + global_scores) / 2
            return sem_seg_postprocess(merged[0], out_res, height, width)

        per_class = 4 * (2 * height * width + 2 * logits.shape[0] * kernel * kernel
                         + 3 * out_res[0] * out_res[1])
        return self._deferred(logits.shape[1], (height, width), compute, per_class)
