"""Run names and identity hashes stay what they were: a finished run (a study in progress,
a sweep's folders, the logit caches) is found again after a change to the code. The values
were computed at commit 90d86f2, before the registries (issue 16); a change that alters
one renames runs that exist on disk, so it must not pass unnoticed."""
import pytest

from lmoe_viz.config import RunConfig
from lmoe_viz.grid import cell_name
from lmoe_viz.io import dict_hash

#: (config fields, identity hash, identity hash once resolved, run folder name)
GOLDEN = [
    ({}, '825c936a08a7782e', 'e6c5c9e5030cf932', 'pretrained'),
    ({'preset': 'fashion-mnist'}, '4b0d6916250cf44d', '54d807e1a5a3906b', 'pretrained'),
    ({'method': 'ce'}, '3aa7f9e2882d86d6', 'a91c2d6e5c23c4b5', 'ce_s0'),
    ({'method': 'oe'}, '45840e0e1d6d4557', 'fcbad96c8b5971e3', 'oe_s0'),
    ({'method': 'energy_oe'}, 'c0c421d301eb9e92', '38921fd2797cbd4b', 'energy_oe_s0'),
    ({'method': 'mixoe'}, '4491f589c3f8b783', '23a9544d686c557c', 'mixoe_a1_s0'),
    ({'method': 'mixoe', 'lc': True, 'alpha': 0.3}, '39d311c1b3ff3f9e', '33cc4b2dfa14ae81', 'mixoe_lc_a0.3_s0'),
    ({'method': 'mixoe', 'mix_op': 'cutmix'}, '419e8b6780b7de4b', '6e06c768185ecedc', 'mixoe_a1_s0'),
    ({'method': 'logit_mixoe', 'lc': True, 'lc_mode': 'norm'}, '5a1505b986f85c17', '2d01032b05524d7b', 'logit_mixoe_lc-norm_a1_s0'),
    ({'method': 'logit_mixoe', 'mix_layer': 'layer2', 'id_forward': 'separate', 'mix_continue': 'mixed', 'mix_noise': 'both'}, 'fd7dbfd9b6c6c239', '7979f3b2a09b876a', 'logit_mixoe_a1_s0'),
    ({'method': 'logit_mixoe', 'bn': 'joint', 'id_forward': 'separate'}, 'baa4ddf664982cbf', '1642a6f703926832', 'logit_mixoe_a1_s0_bn-joint'),
    ({'method': 'mixoe', 'outliers': 'matched', 'seed': 3}, '466a9d8a9b863ae9', 'ab46bc3123a12543', 'mixoe_a1_s3'),
    ({'method': 'oe', 'preset': 'fashion-mnist', 'outliers': 'matched', 'bn': 'id-stats'}, '84ed323b95420244', '01d08ec38ba8a818', 'oe_s0_bn-id-stats'),
    ({'preset': 'bird', 'method': 'mixoe', 'decode': 'draft', 'image_size': 64}, 'b37f0a04cd0fcd98', 'bf4a38d47f52700f', 'mixoe_a1_s0'),
    ({'preset': 'aircraft', 'aux_exclude': 'none', 'split': 2}, 'aa5b4ccb9db0af5f', '2bbdf77fb9a92651', 'pretrained'),
    ({'method': 'mixoe', 'device': 'cpu', 'num_workers': 0, 'channels_last': True, 'eval_every': 1, 'data_root': '/x'}, '4491f589c3f8b783', '23a9544d686c557c', 'mixoe_a1_s0'),
]


@pytest.mark.parametrize("fields,raw,resolved,name", GOLDEN)
def test_run_names_and_identity_hashes_are_unchanged(fields, raw, resolved, name):
    cfg = RunConfig(**fields)
    assert dict_hash(cfg.identity()) == raw
    assert dict_hash(cfg.resolved().identity()) == resolved
    assert cell_name(cfg.method, cfg.lc, cfg.alpha, cfg.seed, cfg.lc_mode, cfg.bn) == name


def _other(f, value):
    """A valid value of field ``f`` other than ``value``."""
    choices = f.metadata["choices"]
    if choices:
        return next(c for c in choices if c != value)
    if f.type == "bool":
        return not value
    if "int" in f.type:
        return (value or 0) + 1
    if "float" in f.type:
        return (value or 0.0) * 2 + 1
    return "other"


def test_exactly_the_fields_that_change_training_change_the_run_identity():
    """Each field declares once (config.option) whether it changes what is trained; the
    identity follows: every such field moves the hash, every other leaves it."""
    import dataclasses

    from lmoe_viz.config import RUNTIME_FIELDS
    base = RunConfig(method="mixoe", lc=True)            # every option of a mixing run applies
    for f in dataclasses.fields(RunConfig):
        changed = dataclasses.replace(base, **{f.name: _other(f, getattr(base, f.name))})
        moved = dict_hash(changed.identity()) != dict_hash(base.identity())
        assert moved == (f.metadata["trains"] is True), f.name
    assert set(RUNTIME_FIELDS) == {"data_root", "device", "num_workers", "compile",
                                   "channels_last", "eval_every"}


def test_cli_options_are_the_config_fields_with_their_defaults_and_help():
    import dataclasses

    from lmoe_viz.cli import get_args_parser
    parser = get_args_parser()
    args = parser.parse_args(["finetune", "--init", "x.pt", "--method", "oe", "--out", "o"])
    sub = parser._subparsers._group_actions[0].choices["finetune"]
    helps = {a.dest: a.help for a in sub._actions}
    for f in dataclasses.fields(RunConfig):
        if f.metadata["cli"] in ("common", "train", "finetune"):
            assert getattr(args, f.name) == f.default, f.name
            assert helps[f.name] == f.metadata["help"], f.name
    pre = parser.parse_args(["pretrain", "--out", "o", "--weights", "none", "--correct-quirks"])
    assert pre.weights == "none" and pre.faithful is False and not hasattr(pre, "lc")
