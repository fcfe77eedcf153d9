"""Method presets: each method is a set of slot choices, nothing more.

Every default is the paper's or its official code's, with the source beside it; the
encoder is ResNet-18 throughout (so that methods are compared on one backbone) and
heads as wide as the papers' ResNet-50 ones are narrowed for it where the comment says
so. Recipes override any of it.
"""

from __future__ import annotations

from cmp import hookimpl
from cmp.api.contracts import MethodPreset
from cmp.api.hookspecs import Register

SIMCLR = MethodPreset(
    {
        "augmentation": "simclr",
        "encoder": "resnet18",
        "projection_head": {"name": "mlp", "params": {"hidden_dim": 512, "out_dim": 128}},
        "predictor": None,
        "target": "shared",
        "negative_source": "in_batch",
        "loss": {"name": "nt_xent", "params": {"temperature": 0.5}},
        "optimizer": {"name": "lars", "params": {"lr": 0.3, "lr_scaling": "linear", "weight_decay": 1e-6}},
        "schedule": {"name": "cosine", "params": {"warmup_epochs": 1}},
        "pairs": "symmetric",
        "joint_forward": True,
    },
    "SimCLR (Chen et al. 2020): shared weights, 2N-2 in-batch negatives, NT-Xent, LARS.",
)


MOCO = MethodPreset(
    {
        "augmentation": "simclr",
        "encoder": "resnet18",
        "projection_head": {"name": "mlp", "params": {"hidden_dim": 512, "out_dim": 128}},
        "predictor": None,
        "target": {"name": "momentum", "params": {"momentum": 0.99, "bn_shuffle_groups": 4}},
        "negative_source": {"name": "queue", "params": {"size": 4096}},
        "loss": {"name": "nt_xent", "params": {"temperature": 0.2}},
        "optimizer": {"name": "sgd", "params": {"lr": 0.06, "lr_scaling": "linear", "weight_decay": 5e-4}},
        "schedule": "cosine",
        "pairs": "one_way",
        "joint_forward": False,
    },
    "MoCo v2 (Chen et al. 2020): momentum key encoder, queue of 4096 keys, InfoNCE t=0.2.",
)

BYOL = MethodPreset(
    {
        "augmentation": "byol",
        "encoder": "resnet18",
        "projection_head": {"name": "mlp", "params": {"hidden_dim": 1024, "out_dim": 256}},
        "predictor": {"name": "mlp", "params": {"hidden_dim": 1024, "out_dim": 256}},
        "target": {"name": "momentum", "params": {"momentum": 0.99, "schedule": "cosine"}},
        "negative_source": "none",
        "loss": "cosine_regression",
        "optimizer": {"name": "lars", "params": {"lr": 0.2, "lr_scaling": "linear", "weight_decay": 1.5e-6}},
        "schedule": {"name": "cosine", "params": {"warmup_epochs": 1}},
        "pairs": "symmetric",
        "joint_forward": False,
    },
    "BYOL (Grill et al. 2020): predictor, EMA target with tau 0.99 -> 1, 2 - 2 cos, no negatives.",
)

MOCO_V3 = MethodPreset(
    {
        "augmentation": {"name": "byol", "params": {"crop_scale": [0.2, 1.0]}},
        "encoder": "resnet18",
        "projection_head": {
            "name": "mlp",
            "params": {"hidden_dim": 4096, "out_dim": 256, "num_layers": 2, "last_batch_norm": True},
        },
        "predictor": {"name": "mlp", "params": {"hidden_dim": 4096, "out_dim": 256, "num_layers": 2}},
        "target": {"name": "momentum", "params": {"momentum": 0.99, "schedule": "cosine"}},
        "negative_source": {"name": "in_batch", "params": {"keys": "positive_view"}},
        "loss": {"name": "moco_v3_infonce", "params": {"temperature": 1.0}},
        "optimizer": {"name": "lars", "params": {"lr": 0.6, "lr_scaling": "linear", "weight_decay": 1e-6}},
        "schedule": {"name": "cosine", "params": {"warmup_epochs": 10}},
        "pairs": "symmetric",
        "joint_forward": False,
    },
    "MoCo v3 (Chen, Xie & He 2021): momentum encoder and predictor, no queue, each query against "
    "the N keys of the other view, 2t InfoNCE with t=1.0, momentum 0.99 -> 1 (cosine), LARS.",
)
"""MoCo v3 in its authors' ResNet setup (facebookresearch/moco-v3: main_moco.py defaults,
moco/builder.py `MoCo_ResNet`, and CONFIG.md's ResNet-50 commands):

- loss `ctr(q1, k2) + ctr(q2, k1)`, ctr = 2t CrossEntropy(q k^T / t): `moco_v3_infonce`
  with `in_batch` `keys: positive_view`, each query against the N momentum keys of the
  other view (Algorithm 1); cmp averages over the two pairs, so the loss and its
  gradient are half of Algorithm 1's (`tests/plugins/test_moco_v3_nnclr.py`).
  LARS's trust ratio makes the weights' steps independent of that factor (up to the
  1e-6 weight decay's share); biases and BatchNorm, which LARS leaves unadapted, take
  half the official step.
- t = 1.0: the code's default (`--moco-t`), used by every ResNet-50 command; 0.2 is
  the ViT commands' value. cmp's encoders are ResNets and small convnets, and the
  rest of this preset (LARS, 2-layer projector) is the ResNet setup t = 1.0 belongs to.
- momentum 0.99 rising to 1 on a half-cosine over training (`--moco-m 0.99
  --moco-m-cos`, every command in CONFIG.md): the `momentum` target's `cosine`
  schedule, the same formula; the authors update the key encoder before each step's
  forward with the coming step's m, cmp after each step with the next one's, which is
  the same sequence of weights. No BatchNorm shuffle (v3 has none).
- projector: 2 layers, hidden 4096, out 256, BatchNorm on the hidden layer and an
  affine-free one on the output, no biases; predictor: 2 layers, hidden 4096, out 256,
  no output BatchNorm (cmp's `mlp` keeps the predictor's last bias, which the authors'
  has not).
- LARS, lr 0.6 x B/256, weight decay 1e-6, momentum 0.9, trust coefficient 1e-3, no
  decay or adaptation for biases and norms; 10 warm-up epochs then cosine decay.
- BYOL's augmentations with the minimum crop scale 0.2 (`--crop-min=.2` in every
  ResNet-50 command); the views go through the network one at a time (`q1`, `q2`).
"""

NNCLR = MethodPreset(
    {
        "augmentation": "byol",
        "encoder": "resnet18",
        "projection_head": {
            "name": "mlp",
            "params": {"hidden_dim": 2048, "out_dim": 256, "num_layers": 3, "last_batch_norm": True},
        },
        "predictor": {"name": "mlp", "params": {"hidden_dim": 4096, "out_dim": 256, "num_layers": 2}},
        "target": {"name": "nearest_neighbour", "params": {"size": 98_304}},
        "negative_source": {"name": "in_batch", "params": {"keys": "anchor_view"}},
        "loss": {"name": "nt_xent", "params": {"temperature": 0.1, "query": "positive"}},
        "optimizer": {"name": "lars", "params": {"lr": 0.3, "lr_scaling": "linear", "weight_decay": 1e-6}},
        "schedule": {"name": "cosine", "params": {"warmup_epochs": 10}},
        "pairs": "symmetric",
        "joint_forward": True,
    },
    "NNCLR (Dwibedi et al. 2021): the positive is the nearest neighbour in a support set of "
    "98 304 past embeddings, NT-Xent t=0.1 against the other view's predictions, LARS.",
)
"""NNCLR as the paper describes it (Dwibedi et al. 2021, section 3 and 4.1; no official
code was released):

- loss, eq. 2 symmetrised: -log exp(NN(z_i) . p_i+ / t) / sum_k exp(NN(z_i) . p_k+ / t),
  the support set's nearest neighbour of view 1's z as the query, view 2's predictions
  as candidates (its own and the N - 1 other images'), and the same with the views
  swapped, averaged: `nearest_neighbour` target, `nt_xent` with `query: positive`,
  `in_batch` with `keys: anchor_view` (solo-learn's `nnclr_loss_func` computes the same).
- t = 0.1, support set 98 304 (ImageNet, batches of 4096), d = 256: the paper's. The
  support set receives one view's embeddings per image and step (solo-learn's choice;
  the paper does not say which view). A recipe on a data set smaller than ImageNet
  takes a smaller support set (`recipes/nnclr.yaml`: about a tenth of the training set,
  as 98 304 is of ImageNet's).
- projector 3 layers (2048, 2048, 256) with BatchNorm, the output's too (affine-free
  here, as solo-learn's reimplementation normalises it); predictor 2 layers (4096, 256).
- LARS, weight decay 1e-6, 10 warm-up epochs then cosine decay, BYOL's augmentations;
  lr 0.3 x B/256, SimCLR's rule, which NNCLR's optimisation follows. The paper does not
  say whether the views share BatchNorm statistics; they are forwarded as one batch, as
  SimCLR's code does.
"""


SIMSIAM = MethodPreset(
    {
        # MoCo v2's augmentation, which SimSiam uses (paper, section 3; official code main_simsiam.py):
        # crops of 20-100 %, jitter 0.4/0.4/0.4/0.1 with p 0.8, grey 0.2, blur p 0.5 (none below 64 px, as their CIFAR code).
        "augmentation": {"name": "simclr", "params": {
            "crop_scale": [0.2, 1.0], "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1,
        }},
        "encoder": "resnet18",
        # Projection MLP: 3 layers of 2048, BN on every layer, the output BN without affine or ReLU (section 3).
        "projection_head": {"name": "mlp", "params": {
            "hidden_dim": 2048, "out_dim": 2048, "num_layers": 3, "last_batch_norm": True,
        }},
        # Prediction MLP: a 2048 -> 512 -> 2048 bottleneck, BN on its hidden layer only (section 3), trained at a
        # fixed learning rate: Table 1 (c), and the --fix-pred-lr of the official README's pre-training command.
        "predictor": {"name": "mlp", "params": {"hidden_dim": 512, "out_dim": 2048, "fixed_lr": True}},
        "target": {"name": "shared", "params": {"stop_gradient": True}},
        "negative_source": "none",
        # D(p, z) = -cos(p, stopgrad(z)); symmetric pairs make L = D(p1, z2) / 2 + D(p2, z1) / 2 (eq. 2).
        "loss": "negative_cosine",
        # SGD, lr 0.05 x B / 256, momentum 0.9, weight decay 1e-4 (section 3) on every parameter,
        # biases and BatchNorm included, as the official code's torch.optim.SGD does.
        "optimizer": {"name": "sgd", "params": {
            "lr": 0.05, "lr_scaling": "linear", "momentum": 0.9, "weight_decay": 1e-4, "exclude_bias_and_norm": False,
        }},
        # Cosine decay to 0, no warm-up (section 3; the code decays per epoch, cmp per step).
        "schedule": "cosine",
        "pairs": "symmetric",
        "joint_forward": False,  # the code passes x1 and x2 through the network one at a time
    },
    "SimSiam (Chen & He 2021): shared weights, stop-gradient target, predictor at a fixed lr, negative cosine, "
    "no negatives, SGD.",
)

BARLOW_TWINS = MethodPreset(
    {
        # BYOL's asymmetric pair: blur p 1.0 / 0.1, solarize 0 / 0.2 (paper, section 4 and appendix; code main.py Transform).
        "augmentation": "byol",
        "encoder": "resnet18",
        # Projector: 3 linear layers, BN and ReLU after the first two, the first two without bias (code main.py).
        # The paper's 8192 wide for ResNet-50 is narrowed to 2048 for ResNet-18. The last layer keeps a bias the
        # code does not have: the loss standardises each column, so it has no effect and gets no gradient.
        "projection_head": {"name": "mlp", "params": {"hidden_dim": 2048, "out_dim": 2048, "num_layers": 3}},
        "predictor": None,
        "target": "shared",
        "negative_source": "none",
        # lambda = 5e-3 (paper, section 4; the code's default is 0.0051); BatchNorm's biased std, as the code.
        "loss": {"name": "barlow_twins", "params": {"off_diagonal_weight": 5e-3}},
        # LARS, lr 0.2 for weights and 0.0048 for biases and BN parameters, both x B / 256, momentum 0.9, eta 1e-3;
        # biases and BN without weight decay or LARS adaptation (paper, section 4; code main.py). Weight decay
        # 1.5e-6 is the paper's (the code's default is 1e-6).
        "optimizer": {"name": "lars", "params": {
            "lr": 0.2, "bias_lr": 0.0048, "lr_scaling": "linear", "weight_decay": 1.5e-6, "momentum": 0.9, "eta": 1e-3,
        }},
        # 10 warm-up epochs, then cosine decay to 1/1000 of the learning rate (paper, section 4; code adjust_learning_rate).
        "schedule": {"name": "cosine", "params": {"warmup_epochs": 10, "final_lr_fraction": 0.001}},
        "pairs": "one_way",  # the loss treats its two views alike: one pair is the whole loss
        "joint_forward": False,  # the code passes y1 and y2 through the network one at a time
    },
    "Barlow Twins (Zbontar et al. 2021): shared weights, 3-layer projector, cross-correlation to identity "
    "(lambda 5e-3), no negatives, LARS.",
)

VICREG = MethodPreset(
    {
        # BYOL's asymmetric pair, as VICReg's code (augmentations.py TrainTransform) and paper (appendix C.1).
        "augmentation": "byol",
        "encoder": "resnet18",
        # Expander: 3 linear layers, BN and ReLU after the first two (paper, section 4.2; code main_vicreg.py
        # Projector). The paper's 8192 wide for ResNet-50 is narrowed to 2048 for ResNet-18. The code's bias
        # before each BN and the mlp's bias on the last layer cancel out of the loss (centred statistics and
        # a difference of the branches), so neither changes training.
        "projection_head": {"name": "mlp", "params": {"hidden_dim": 2048, "out_dim": 2048, "num_layers": 3}},
        "predictor": None,
        "target": "shared",
        "negative_source": "none",
        # lambda = mu = 25, nu = 1 (paper, section 4.3); the variance term halved as the code does (the loss's default).
        "loss": {"name": "vicreg", "params": {"invariance_weight": 25.0, "variance_weight": 25.0, "covariance_weight": 1.0}},
        # LARS, base lr 0.2 x B / 256, weight decay 1e-6, eta 1e-3, biases and BN without weight decay or
        # adaptation (paper, appendix C.1; code main_vicreg.py --base-lr, --wd and exclude_bias_and_norm).
        "optimizer": {"name": "lars", "params": {
            "lr": 0.2, "lr_scaling": "linear", "weight_decay": 1e-6, "momentum": 0.9, "eta": 1e-3,
        }},
        # 10 warm-up epochs, then cosine decay to 1/1000 (code main_vicreg.py adjust_learning_rate).
        "schedule": {"name": "cosine", "params": {"warmup_epochs": 10, "final_lr_fraction": 0.001}},
        "pairs": "one_way",  # the loss treats Z and Z' alike: one pair is the whole loss
        "joint_forward": False,  # the code passes x and y through the network one at a time
    },
    "VICReg (Bardes et al. 2022): shared weights, 3-layer expander, variance-invariance-covariance (25/25/1), "
    "no negatives, LARS.",
)


SWAV = MethodPreset(
    {
        # Multi-crop: 2 global crops of 14-100 % and 6 small ones of 5-14 %, at 3/7 of the side (224 and 96
        # in the paper, section 4 and the official README's commands); SimCLR's colour distortion on each.
        "augmentation": {"name": "multicrop", "params": {"local_views": 6}},
        "encoder": "resnet18",
        # Projection head: 2 layers, hidden 2048 with BN and ReLU, output 128 (official resnet50.py,
        # --hidden_mlp 2048 --feat_dim 128); the hidden layer narrowed to 512 for ResNet-18's 512 features.
        "projection_head": {"name": "mlp", "params": {"hidden_dim": 512, "out_dim": 128}},
        "predictor": None,
        "target": "shared",  # the codes come from the network's own global-crop scores, without gradient
        "negative_source": "none",
        "loss": None,
        # 3000 prototypes, temperature 0.1, Sinkhorn epsilon 0.05 and 3 iterations, prototypes frozen for
        # one epoch (main_swav.py's defaults; see plugins/clustering.py for the fractions of the budget).
        "objective": "swav",
        # LARS, lr 4.8 at batch 4096 = 0.3 x B / 256, weight decay 1e-6 (main_swav.py defaults, README).
        "optimizer": {"name": "lars", "params": {"lr": 0.3, "lr_scaling": "linear", "weight_decay": 1e-6}},
        # Linear warm-up for 10 epochs, then cosine decay (main_swav.py --warmup_epochs 10).
        "schedule": {"name": "cosine", "params": {"warmup_epochs": 10}},
        "pairs": "multicrop",  # every crop predicts the codes of each global crop but itself
        "joint_forward": True,  # the code forwards the crops of one resolution as one batch
    },
    "SwAV (Caron et al. 2020): multi-crop, 3000 prototypes, Sinkhorn-Knopp codes of the global crops "
    "(epsilon 0.05), swapped prediction at temperature 0.1, LARS.",
)

DINO = MethodPreset(
    {
        # Multi-crop as the official README's ResNet-50 command: global crops of 14-100 %, local ones of
        # 5-14 % (--global_crops_scale 0.14 1 --local_crops_scale 0.05 0.14), 8 local crops (main_dino.py's default).
        "augmentation": {"name": "multicrop", "params": {"local_views": 8}},
        "encoder": "resnet18",
        # DINO's head: 3 layers (GELU, no BN), hidden 2048, bottleneck 256, 65536 outputs, weight-normalised
        # last layer frozen for the first epoch (main_dino.py's defaults). 65536 x 256 is more weights than
        # ResNet-18's: the recipes take fewer outputs for small data.
        "projection_head": "dino",
        "predictor": None,
        # The teacher: an EMA of the student, momentum 0.996 -> 1 on a cosine (main_dino.py --momentum_teacher);
        # it embeds the global crops only.
        "target": {"name": "momentum", "params": {"momentum": 0.996, "schedule": "cosine"}},
        "negative_source": "none",
        "loss": None,
        # Student temperature 0.1, teacher 0.04 -> 0.07 over the first tenth, centre momentum 0.9 (the paper).
        "objective": "dino",
        # The ResNet-50 command of the official README: SGD, lr 0.03 x B / 256, weight decay 1e-4 (no decay
        # for biases and norms, as the code's parameter groups), 10 warm-up epochs then cosine decay.
        "optimizer": {"name": "sgd", "params": {"lr": 0.03, "lr_scaling": "linear", "weight_decay": 1e-4}},
        "schedule": {"name": "cosine", "params": {"warmup_epochs": 10}},
        "pairs": "multicrop",  # every student crop against each teacher (global) crop but itself
        "joint_forward": True,  # the student forwards the crops of one resolution as one batch
    },
    "DINO (Caron et al. 2021): EMA teacher on the global crops, centred and sharpened (0.04 -> 0.07), "
    "student at 0.1 on every crop, DINO head, SGD (the authors' ResNet-50 settings).",
)
"""DINO's ResNet setting, and where it differs from the official code (facebookresearch/dino):

- the teacher embeds each global crop on its own (cmp's `momentum` target), the code's
  both global crops as one batch: with BatchNorm in the encoder the teacher's batch
  statistics are per crop here;
- the code clips each parameter's gradient norm at 3.0 (`--clip_grad`) and its ViT
  settings schedule weight decay 0.04 -> 0.4 with AdamW; the ResNet-50 command keeps
  1e-4, and cmp clips nothing;
- the teacher's momentum for the step s is the code's for s + 1 (cmp updates the EMA
  after each step with the finished fraction), one step of a cosine;
- epoch-based schedules are fractions of the budget: the temperature warm-up (30 of
  300 epochs in the paper: 0.1) and the last layer's freeze (1 of 100: 0.01).
"""


@hookimpl
def cmp_register_methods(register: Register) -> None:
    register("simclr", SIMCLR)
    register("moco", MOCO)
    register("byol", BYOL)
    register("simsiam", SIMSIAM)
    register("barlow_twins", BARLOW_TWINS)
    register("vicreg", VICREG)
    register("moco_v3", MOCO_V3)
    register("nnclr", NNCLR)
    register("swav", SWAV)
    register("dino", DINO)
