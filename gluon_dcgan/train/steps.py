"""The chapter's update_D and update_G, computing the same losses with less work.

The names and the chapter's argument order (net_D before net_G) are kept, but the
signatures are not d2l's, and the values they compute are:

    d2l:  update_D(X, Z, net_D, net_G, loss, trainer_D) -> float
          update_G(Z, net_D, net_G, loss, trainer_G) -> float
    here: update_D(Xs, Zs, net_D, net_G, loss, trainer_D, step_size, D_out=None)
              -> ([loss_D sum per device], [fake_X per device])
          update_G(fake_Xs, net_D, loss, trainer_G, step_size, D_out=None)
              -> [loss_G sum per device]

Why each difference (none changes a parameter's value; tests/test_equivalence.py
checks every one against d2l's own functions):
- update_G takes update_D's fake images instead of Z and net_G: it reuses them
  rather than running net_G again (the d2l comment allows it), since net_G's
  weights do not change between the two steps. MXNet 1.9 updates BatchNorm
  running statistics in the backward pass, and net_G's backward runs once per
  step in both versions, so even those statistics match.
- update_G asks autograd only for the gradient w.r.t. the fake images, so no
  discriminator weight gradients are computed that the G step would throw away.
- Xs, Zs and the results are lists with one slice per device (split_and_load),
  and `step_size` is the whole batch's size (over devices and workers), which
  d2l's single-device steps read from X.
- Losses come back as device arrays, not floats: no host sync per step.
- Given a list `D_out`, the steps append the per-device sums of sigmoid(net_D(.))
  they already computed (D(x), D(G(z)) before and after the D step), also as
  device arrays: the diagnostics cost no forward pass and no sync.
Everywhere else in the package net_G comes before net_D.
"""
from mxnet import autograd, gluon, init, np, npx


def make_loss():
    """The chapter's loss."""
    return gluon.loss.SigmoidBCELoss()


def initialize(net_G, net_D, ctxs):
    """The chapter's init: N(0, 0.02) weights, BatchNorm gamma/beta keep 1/0."""
    # Shapes are inferred, so the weights are drawn at the first forward pass (net_G's
    # first), whatever the order of these calls.
    net_G.initialize(init=init.Normal(0.02), force_reinit=True, ctx=ctxs)
    net_D.initialize(init=init.Normal(0.02), force_reinit=True, ctx=ctxs)


def hybridize(*nets):
    """Static graphs and memory: the shapes are fixed within an epoch."""
    for net in nets:
        net.hybridize(static_alloc=True, static_shape=True)


def make_trainers(net_G, net_D, lr, beta1, kvstore=None, lr_G=None, lr_D=None):
    """(trainer_G, trainer_D): two Adam trainers with the chapter's hyper-parameters.

    `lr_G` and `lr_D` (TTUR: a learning rate per net) default to the chapter's one `lr`.

    With a dist kvstore, Adam runs on the parameter servers (MXNet's default,
    update_on_kvstore): with worker-side updates MXNet 1.9.1's dist_sync let the
    workers' weights drift apart in about one run in three here.
    """
    hp_G = {'learning_rate': lr if lr_G is None else lr_G, 'beta1': beta1}
    hp_D = {'learning_rate': lr if lr_D is None else lr_D, 'beta1': beta1}
    kv_D = kv_G = {} if kvstore is None else {'kvstore': kvstore}
    if kvstore is not None and not isinstance(kvstore, str):
        from ..dist.kvstore import KeyOffsetKVStore
        # One dist store per process; net_G's keys start after net_D's.
        kv_D = {'kvstore': KeyOffsetKVStore(kvstore, 0)}
        kv_G = {'kvstore': KeyOffsetKVStore(kvstore, len(net_D.collect_params().keys()))}
    trainer_D = gluon.Trainer(net_D.collect_params(), 'adam', hp_D, **kv_D)
    trainer_G = gluon.Trainer(net_G.collect_params(), 'adam', hp_G, **kv_G)
    return trainer_G, trainer_D


def _labels(value, like):
    return np.full((like.shape[0],), value, ctx=like.ctx)


def _sigmoid_sums(Ys):
    return [npx.sigmoid(Y).sum() for Y in Ys]


def update_D(Xs, Zs, net_D, net_G, loss, trainer_D, step_size, D_out=None):
    """One discriminator step; returns ([loss_D sum per device], [fake_X per device]).

    If `D_out` is a list, appends [sum of D(x)] and [sum of D(G(z))] per device."""
    losses, fake_Xs, real_Ys, fake_Ys = [], [], [], []
    with autograd.record():
        for X, Z in zip(Xs, Zs):
            real_Y = net_D(X)
            fake_X = net_G(Z)
            # Gradients for net_G are not needed here: detach it.
            fake_Y = net_D(fake_X.detach())
            losses.append((loss(real_Y, _labels(1, X)) + loss(fake_Y, _labels(0, X))) / 2)
            fake_Xs.append(fake_X)
            real_Ys.append(real_Y)
            fake_Ys.append(fake_Y)
    autograd.backward(losses)
    trainer_D.step(step_size)
    if D_out is not None:
        D_out += [_sigmoid_sums(real_Ys), _sigmoid_sums(fake_Ys)]
    return [l.sum() for l in losses], fake_Xs


def update_G(fake_Xs, net_D, loss, trainer_G, step_size, D_out=None):
    """One generator step on update_D's fake images; returns [loss_G sum per device].

    If `D_out` is a list, appends [sum of D(G(z)) per device] as net_D sees it now."""
    # Recomputing fake_Y is needed since net_D has changed; net_G has not.
    inputs = [fake_X.detach() for fake_X in fake_Xs]
    for x in inputs:
        x.attach_grad()
    with autograd.record():
        fake_Ys = [net_D(x) for x in inputs]
        losses = [loss(Y, _labels(1, x)) for Y, x in zip(fake_Ys, inputs)]
    # Only d loss / d fake_X: net_D's own weight gradients would be discarded.
    grads = autograd.grad(losses, inputs)
    autograd.backward(fake_Xs, grads)
    trainer_G.step(step_size)
    if D_out is not None:
        D_out.append(_sigmoid_sums(fake_Ys))
    return [l.sum() for l in losses]
