"""AHSSeg: the meta-architecture (CLIP backbone -> [AFR] -> CAT-Seg head -> losses / inference).

With the AHS modules off this is H-CLIP (``CLIP_FINETUNE oft_both``) or CAT-Seg
(``CLIP_FINETUNE attention``), computed as their reference implementations do: a module that is
off is not even built, so parameters, outputs and losses are exactly the baseline's.

One step, B images, T classes::

    images (uint8, RGB) -> CLIP-normalised, zero-padded to a common size (multiple of
        SIZE_DIVISIBILITY), resized to CLIP_RESOLUTION                        (B,3,R,R)
    backbone.encode_image -> dense (B,D,h,w), guidance [(B,W,h,w), ...]
    backbone.encode_text(vocabulary) -> text (T,P,D)
    [AFR] dense -> dense' = dense + α·(gate⊙dense − dense)      (training and every inference path)
    sem_seg_head(dense', text, guidance) -> logits (B,T,4h,4w)
    training: {"loss_sem_seg": BCE-with-logits against one-hot labels,
               [HPA] "loss_proto", [SDR] "loss_distill", [AFR] "loss_rectify"}
    inference: sigmoid scores (T,H,W) at the original size, whole image or sliding window

The vocabulary is the training dataset's ``stuff_classes`` in training; at test time the
``prompt_classes`` (PAS-20b) or else ``stuff_classes`` of the dataset named by each input's
``"dataset_name"``, unless :meth:`AHSSeg.set_vocabulary` fixed one.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, SEM_SEG_HEADS_REGISTRY
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import ImageList
from torch import nn

from .modeling.clip import build_clip_backbone
from .modeling.head import CATSegHead  # noqa: F401  (registers the default MODEL.SEM_SEG_HEAD.NAME)
from .modeling.hyperspherical_innovations import AFR, HPA, SDR


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
        prototype_alignment: Optional[HPA] = None,
        self_distillation: Optional[SDR] = None,
        feature_rectification: Optional[AFR] = None,
    ):
        """
        Args:
            backbone: the CLIP backbone (``encode_image``, ``encode_text``, ``pixel_mean``,
                ``pixel_std``, ``resolution``).
            sem_seg_head: the CAT-Seg head, built for that backbone.
            train_dataset: name of the training dataset, whose ``stuff_classes`` are the
                training vocabulary (None: the model cannot train).
            ignore_value: label of unlabelled pixels.
            size_divisibility: images of a batch are zero-padded (after normalisation) to a
                common size that is a multiple of this, before the resize to CLIP's resolution.
            sliding_window: test by sliding window instead of on the whole image.
            sliding_window_crop: crop side (pixels of the image resized to ``out_res``).
            sliding_window_overlap: overlap of neighbouring crops, in [0, 1).
            sliding_window_out_res: (H, W) the image is resized to before it is cut.
            prototype_alignment: HPA (training-only loss ``loss_proto``), or None.
            self_distillation: SDR (training-only loss ``loss_distill``), or None.
            feature_rectification: AFR (rectifies the dense embeddings everywhere, loss
                ``loss_rectify``), or None.
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
        # CLIP's normalisation constants (0-255 scale); fixed, so not part of checkpoints.
        self.register_buffer("pixel_mean", torch.tensor(backbone.pixel_mean).view(3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(backbone.pixel_std).view(3, 1, 1),
                             persistent=False)
        self._vocabulary_override: Optional[List[str]] = None
        # Assigned only when on, so a module that is off adds no parameter, buffer or key.
        if prototype_alignment is not None:
            self.prototype_alignment = prototype_alignment
        if self_distillation is not None:
            self.self_distillation = self_distillation
        if feature_rectification is not None:
            self.feature_rectification = feature_rectification
        # The trainer's iteration (SDR's schedule), set before every step by ModelIterationHook;
        # not model state: on resume it comes back with the trainer's own iteration.
        self.iteration = 0

    @classmethod
    def from_config(cls, cfg):
        backbone = build_clip_backbone(cfg)
        head = SEM_SEG_HEADS_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.NAME)(cfg, backbone)
        train_dataset = cfg.DATASETS.TRAIN[0] if len(cfg.DATASETS.TRAIN) else None
        switches = cfg.MODEL.SEM_SEG_HEAD
        modules = {}
        if switches.USE_PROTOTYPE_ALIGNMENT:
            if train_dataset is None:
                raise ValueError("USE_PROTOTYPE_ALIGNMENT needs DATASETS.TRAIN: its prototypes "
                                 "start from the training classes' text embeddings")
            with torch.no_grad():
                text = backbone.encode_text(_stuff_classes(train_dataset))
            modules["prototype_alignment"] = HPA(cfg, class_text_embeddings=text)
        if switches.USE_SELF_DISTILLATION:
            if not backbone.has_adapters:
                raise ValueError(
                    "USE_SELF_DISTILLATION distils from CLIP with its adapters bypassed, but "
                    f"CLIP_FINETUNE={switches.CLIP_FINETUNE!r} builds no adapters (the teacher "
                    "would be the student); use CLIP_FINETUNE oft_both or switch SDR off")
            modules["self_distillation"] = SDR(cfg)
        if switches.USE_FEATURE_RECTIFICATION:
            modules["feature_rectification"] = AFR(cfg, embed_dim=backbone.embed_dim)
        return {
            **modules,
            "backbone": backbone,
            "sem_seg_head": head,
            "train_dataset": train_dataset,
            "ignore_value": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "size_divisibility": cfg.MODEL.SEM_SEG_HEAD.SIZE_DIVISIBILITY,
            "sliding_window": cfg.TEST.SLIDING_WINDOW,
            "sliding_window_crop": cfg.TEST.SLIDING_WINDOW_CROP,
            "sliding_window_overlap": cfg.TEST.SLIDING_WINDOW_OVERLAP,
            "sliding_window_out_res": tuple(cfg.TEST.SLIDING_WINDOW_OUT_RES),
        }

    @property
    def hpa(self) -> Optional[HPA]:
        return getattr(self, "prototype_alignment", None)

    @property
    def sdr(self) -> Optional[SDR]:
        return getattr(self, "self_distillation", None)

    @property
    def afr(self) -> Optional[AFR]:
        return getattr(self, "feature_rectification", None)

    def set_iteration(self, iteration: int, max_iter: Optional[int] = None) -> None:
        """The trainer's current iteration (SDR's weight schedule w(t))."""
        self.iteration = int(iteration)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

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
            return _stuff_classes(self.train_dataset)
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
        return _stuff_classes(names.pop())

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

    def rectify(self, dense: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """[AFR] dense (B,D,h,w) -> (rectified (B,D,h,w), certainty logits (B,h,w) or None)."""
        if self.afr is None:
            return dense, None
        return self.afr(dense)

    def segment(self, clip_images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """CLIP input (B,3,R,R), text embeddings (T,P,D) -> logits (B,T,4h,4w).

        The test-time path of every inference mode (whole image, each sliding-window view)."""
        dense, guidance = self.extract_features(clip_images)
        return self.sem_seg_head(self.rectify(dense)[0], text, guidance)

    def training_losses(self, clip_images: torch.Tensor, text: torch.Tensor,
                        targets: torch.Tensor, class_names: Sequence[str]
                        ) -> Dict[str, torch.Tensor]:
        """One training step's losses, each logged under its own name (all already weighted).

        Args:
            clip_images: (B,3,R,R) CLIP input; targets: (B,H,W) labels of the same extent.
            text: (T,P,D) text embeddings of ``class_names``, the training vocabulary.
        """
        dense, guidance = self.extract_features(clip_images)
        rectified, certainty = self.rectify(dense)
        losses = self.losses(self.sem_seg_head(rectified, text, guidance), targets)
        if self.afr is not None:
            # Supervised by whether the cost volume *before* rectification was right.
            losses["loss_rectify"] = self.afr.loss(certainty, dense, text, targets)
        if self.hpa is not None:
            # Loss first, then the (all-reduced) momentum update of the prototypes, inside.
            losses["loss_proto"] = self.hpa(rectified, targets)
        if self.sdr is not None:
            teacher_dense, teacher_text = self.sdr.teacher_pass(self.backbone, clip_images,
                                                                class_names)
            losses["loss_distill"] = self.sdr(
                dense, teacher_dense, self.iteration,
                text if self.sdr.distill_text else None, teacher_text)
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
        logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear",
                               align_corners=False)
        one_hot = F.one_hot(torch.where(valid, targets, 0).long(), num_classes)
        one_hot = (one_hot * valid.unsqueeze(-1)).permute(0, 3, 1, 2).to(logits.dtype)
        return {"loss_sem_seg": F.binary_cross_entropy_with_logits(logits, one_hot)}

    def forward(self, batched_inputs: List[Dict]):
        """
        Args:
            batched_inputs: detectron2 records; "image" (3,H,W) RGB 0-255; in training
                "sem_seg" (H,W) labels; at test time optionally "height", "width" (output size)
                and "dataset_name" (whose vocabulary to use).

        Returns:
            training: {"loss_sem_seg", and "loss_rectify" / "loss_proto" / "loss_distill" for
            the AHS modules that are on: scalars}; inference: [{"sem_seg": (T, height, width)
            sigmoid scores}] per input.
        """
        class_names = self.vocabulary(batched_inputs)
        text = self.backbone.encode_text(class_names)
        if self.training:
            clip_images, _, _ = self.preprocess([x["image"] for x in batched_inputs])
            targets = torch.stack([x["sem_seg"] for x in batched_inputs]).to(self.device)
            return self.training_losses(clip_images, text, targets, class_names)
        if self.sliding_window:
            return [{"sem_seg": self.inference_sliding_window(x, text)} for x in batched_inputs]
        return self.inference_whole_image(batched_inputs, text)

    # ------------------------------------------------------------------ inference
    def inference_whole_image(self, batched_inputs: List[Dict], text: torch.Tensor
                              ) -> List[Dict[str, torch.Tensor]]:
        """The batch resized to CLIP's resolution in one view -> per image (T,height,width)."""
        clip_images, image_sizes, padded_size = self.preprocess(
            [x["image"] for x in batched_inputs])
        scores = self.segment(clip_images, text).sigmoid()
        results = []
        for score, size, x in zip(scores, image_sizes, batched_inputs):
            height, width = x.get("height", size[0]), x.get("width", size[1])
            if tuple(size) == padded_size:
                # The scores cover exactly the image: one resize to the output size (CAT-Seg).
                size = score.shape[-2:]
            else:
                # The image is only part of the padded batch the scores cover: bring them to
                # the padded size so that sem_seg_postprocess crops the image's own pixels.
                score = F.interpolate(score[None], size=padded_size, mode="bilinear",
                                      align_corners=False)[0]
            results.append({"sem_seg": sem_seg_postprocess(score, size, height, width)})
        return results

    def inference_sliding_window(self, record: Dict, text: torch.Tensor) -> torch.Tensor:
        """CAT-Seg's sliding-window inference of one image -> (T, height, width) scores.

        The image is resized to ``out_res`` and cut into crops of ``crop`` pixels with stride
        ``int(crop·(1 - overlap))``; the crops and a global view (the whole image resized to one
        crop) go through the model as one batch. Crop scores (sigmoid, at crop size) are
        averaged where crops overlap, then averaged 1:1 with the global view's scores (resized
        to ``out_res``), then resized to the output size.
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

        scores = F.interpolate(self.segment(views, text), size=(kernel, kernel), mode="bilinear",
                               align_corners=False).sigmoid()  # (L + 1, T, k, k)
        crop_scores = scores[:-1].flatten(1).T.unsqueeze(0)  # (1, T·k·k, L)
        merged = F.fold(crop_scores, out_res, kernel, stride=stride) / coverage
        global_scores = F.interpolate(scores[-1:], size=out_res, mode="bilinear",
                                      align_corners=False)
        merged = (merged + global_scores) / 2
        height = record.get("height", out_res[0])
        width = record.get("width", out_res[1])
        return sem_seg_postprocess(merged[0], out_res, height, width)


def _stuff_classes(dataset_name: str) -> List[str]:
    """The ``stuff_classes`` of a registered dataset, or an error saying how to register it."""
    metadata = MetadataCatalog.get(dataset_name)
    # PAS-20b prompts with a wider vocabulary than the classes it scores (see cat_seg.data).
    names = metadata.get("prompt_classes", None) or metadata.get("stuff_classes", None)
    if not names:
        raise ValueError(
            f"dataset {dataset_name!r} has no stuff_classes in its MetadataCatalog entry, so its "
            "vocabulary is unknown; register it (cat_seg.data) or call model.set_vocabulary")
    return list(names)
