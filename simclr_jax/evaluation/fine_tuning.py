"""Fine-tuning on a label subset, and the supervised-from-scratch control.

The network (encoder [+ head1] + linear classifier) is trained end to end on a stratified,
seeded subset of the labelled training split (label_subsets.py) with a supervised step that
runs like the pretraining step: one jax.jit over the data mesh, state donated, batch norm
over the sharded global batch (global BN). Optimizer: optim.make_optimizer(config.finetune.optim)
— by default SimCLR's fine-tuning recipe (SGD, momentum 0.9, lr 0.05 * batch / 256, cosine
decay, no warm-up, no weight decay), with random crop + flips (config.finetune.augment).
Every config.finetune.eval_every_epochs the validation split is scored; the state with the
best config.finetune.select_metric is kept (and training stops after config.finetune.patience
validations without improvement); the test split is scored once, with that state.
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from simclr_jax.data import pipeline
from simclr_jax.errors import RunDiverged, UserError
from simclr_jax.evaluation import label_subsets, linear, networks, run_results, trained_model
from simclr_jax.runtime import console, distributed, metrics, parallel
from simclr_jax.training import features, optim, state as train_state


def make_finetune_step(graphdef, tx, schedule, mesh, state_sharding, class_weights):
  """step(state, batch{'image','label'}) -> (state, metrics): weighted cross-entropy."""
  weights_per_class = jnp.asarray(class_weights, jnp.float32)

  def loss_fn(params, batch_stats, images, labels):
    model = nnx.merge(graphdef, params, batch_stats)
    logits = model(images, train=True)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    weights = weights_per_class[labels]
    loss = jnp.sum(ce * weights) / jnp.maximum(jnp.sum(weights), 1e-12)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    return loss, (nnx.as_pure(nnx.state(model, nnx.BatchStat)), {'train_accuracy': accuracy})

  def step(state, batch):
    (loss, (new_stats, step_metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.batch_stats, batch['image'], batch['label'])
    return train_state.apply_gradients(state, tx, grads, new_stats, loss, step_metrics,
                                         schedule)

  batch_sharding = {'image': parallel.batch_sharding(mesh),
                    'label': parallel.batch_sharding(mesh)}
  return jax.jit(step, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, parallel.replicated(mesh)), donate_argnums=0)


def make_logits_fn(graphdef, mesh):
  def logits(params, batch_stats, images):
    return nnx.merge(graphdef, params, batch_stats)(images, train=False)

  return jax.jit(logits, in_shardings=(parallel.replicated(mesh), parallel.replicated(mesh),
                                       parallel.batch_sharding(mesh)),
                 out_shardings=parallel.replicated(mesh))


def make_features_fn(graphdef, mesh):
  def classifier_inputs(params, batch_stats, images):
    return nnx.merge(graphdef, params, batch_stats).features(images, train=False)

  return jax.jit(classifier_inputs, in_shardings=(
      parallel.replicated(mesh), parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                 out_shardings=parallel.replicated(mesh))


def linear_probe_init(config, workdir, graphdef, state, mesh, subset, val_batches,
                      num_classes: int):
  """LP-FT (Kumar et al. 2022): the classifier starts as linear evaluation's logistic
  regression on the frozen features of the labelled subset (L2 picked on validation), so
  fine-tuning starts from the linear probe instead of a random head, and the first steps'
  large gradients through a random head do not distort the pretrained features."""
  features_fn = make_features_fn(graphdef, mesh)
  train_batches = pipeline.labelled_iterator(
      config, workdir, 'train', batch_size=config.eval_batch_size, indices=subset,
      augment=False, shuffle=False, repeat=False, process_index=jax.process_index(),
      process_count=jax.process_count())
  train = features.apply_over_batches(features_fn, state.params, state.batch_stats,
                                      train_batches, mesh)
  val = features.apply_over_batches(features_fn, state.params, state.batch_stats,
                                    val_batches(), mesh)
  fit = linear.fit_and_select(config, train, val, num_classes)
  kernel, bias = fit.on_raw_features()
  params = jax.device_get(state.params)
  params['classifier']['kernel'] = kernel.astype(np.float32)
  params['classifier']['bias'] = bias.astype(np.float32)
  logging.info('classifier initialised by a linear probe (l2=%g, val balanced accuracy %.4f)',
               fit.l2, fit.val['balanced_accuracy'])
  return state.replace(params=jax.device_put(params, parallel.replicated(mesh)))


def split_batches(config, workdir, split: str, reuse_count: int | None = None):
  """-> a callable giving the split's evaluation batches. A split scored again and again
  (validation: give its image count as reuse_count) is kept in memory when it fits in
  config.finetune.eval_cache_mb, since building the input pipeline for every scoring costs
  more than scoring a small split; otherwise the batches are streamed afresh each call."""
  make = lambda: pipeline.labelled_iterator(
      config, workdir, split, batch_size=config.eval_batch_size, augment=False,
      shuffle=False, repeat=False, process_index=jax.process_index(),
      process_count=jax.process_count())
  if reuse_count and (reuse_count * config.data.image_size ** 2 * 3 * 4 / 2**20
                      <= config.finetune.eval_cache_mb):
    batches = list(make())
    return lambda: batches
  return make


def evaluate_split(batches, logits_fn, state, mesh, num_classes, positive=(),
                   keep_predictions=False):
  logits, labels = features.apply_over_batches(logits_fn, state.params, state.batch_stats,
                                               batches(), mesh)
  probs = np.asarray(jax.nn.softmax(logits))
  result = metrics.classification_metrics(labels, probs.argmax(1), num_classes, probs=probs,
                                          positive_classes=positive)
  if keep_predictions:
    result.update(run_results.test_predictions(labels, probs, positive))
  return result


def effective_batch_size(requested: int, subset_size: int, mesh) -> int:
  """The requested global batch, lowered to what the subset fills (a multiple of devices)."""
  devices = mesh.devices.size
  batch = min(requested, subset_size - subset_size % devices)
  if batch < devices:
    raise UserError(f'config.label_fraction: the subset has {subset_size} images, fewer than '
                    f'the {devices} devices; raise config.label_fraction')
  parallel.check_batch_divides(batch, mesh, 'config.finetune.batch_size')
  return batch


def optimizer_config(config):
  """config.finetune.optim, with finetune.control_base_lr for the supervised control."""
  optim_config = config.finetune.optim
  if config.supervised_control and config.finetune.control_base_lr > 0:
    optim_config = optim_config.copy_and_resolve_references()
    with optim_config.unlocked():
      optim_config.base_lr = config.finetune.control_base_lr
  return optim_config


def num_epochs(config) -> int:
  """config.finetune.num_epochs, or finetune.control_num_epochs for the supervised control."""
  if config.supervised_control and config.finetune.control_num_epochs > 0:
    return config.finetune.control_num_epochs
  return config.finetune.num_epochs


def _check(config):
  label_subsets.check_fraction(config.label_fraction)
  networks.check_starting_point(config, 'finetune')
  if config.finetune.select_metric not in run_results.SELECT_METRICS:
    raise UserError(f'config.finetune.select_metric must be one of '
                    f'{run_results.SELECT_METRICS}, got {config.finetune.select_metric!r}')


def run_finetune(config, workdir: str) -> dict:
  """Fine-tunes (or, with config.supervised_control, trains from scratch); writes metrics.json."""
  config = config.copy_and_resolve_references()
  _check(config)
  info = pipeline.dataset_info(config, workdir)
  positive = metrics.parse_positive_classes(config.positive_classes, info.class_names)
  train_labels = pipeline.split_labels(config, workdir, 'train')
  subset = label_subsets.subset_for_config(config, train_labels)
  mesh = parallel.make_mesh()
  parallel.check_batch_divides(config.eval_batch_size, mesh, 'config.eval_batch_size')
  batch_size = effective_batch_size(config.finetune.batch_size, len(subset), mesh)
  steps_per_epoch = max(1, len(subset) // batch_size)
  # Small subsets get more epochs (SimCLR too fine-tunes 1% of labels for longer than 10%).
  total_steps = config.finetune.num_steps or max(
      config.finetune.min_steps, int(num_epochs(config) * steps_per_epoch))
  # At most ~20 validations per run: tiny subsets have one-step epochs.
  eval_every = max(1, int(round(config.finetune.eval_every_epochs * steps_per_epoch)),
                   total_steps // 20)
  tx, schedule = optim.make_optimizer(optimizer_config(config), batch_size, total_steps,
                                      steps_per_epoch)
  graphdef, state, state_sharding = train_state.create_train_state(
      lambda rngs: networks.FineTuneModel(config, info.num_classes, rngs), tx, mesh, config.seed,
      prepare_params=networks.load_pretrained(config))
  weights = linear.class_weights(train_labels[subset], info.num_classes, config.class_weighting)
  step_fn = make_finetune_step(graphdef, tx, schedule, mesh, state_sharding, weights)
  logits_fn = make_logits_fn(graphdef, mesh)
  logging.info('fine-tuning on %d of %d labelled images, batch %d, %d steps', len(subset),
               len(train_labels), batch_size, total_steps)

  batches = pipeline.labelled_iterator(
      config, workdir, 'train', batch_size=batch_size, indices=subset,
      augment=config.finetune.augment, shuffle=True, repeat=True, seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count())
  val_batches = split_batches(config, workdir, 'val', info.num_val)
  select = config.finetune.select_metric
  best, best_step, since_best, history = None, 0, 0, []
  if config.finetune.linear_init and not config.supervised_control:
    state = linear_probe_init(config, workdir, graphdef, state, mesh, subset, val_batches,
                              info.num_classes)
    # Step 0, the linear probe itself, competes for the kept model like any validation.
    val = evaluate_split(val_batches, logits_fn, state, mesh, info.num_classes)
    best = (val[select], jax.device_get(state), val)
    history.append({'step': 0, 'val_' + select: val[select]})
  bar = console.Progress(total_steps, 'supervised' if config.supervised_control else 'finetune',
                         'steps', images_per_unit=batch_size, every=eval_every, warmup=1)
  for step in range(1, total_steps + 1):
    batch = next(batches)
    state, step_metrics = step_fn(state, parallel.to_global_batch(
        {'image': batch['image'], 'label': batch['label']}, mesh))
    if step % eval_every and step != total_steps:
      bar.update(step)
      continue
    if float(step_metrics['finite']) < 1.0:  # the step skipped its update: stop, say so
      raise RunDiverged(
          f'fine-tuning: non-finite loss or gradient at step {step} '
          f"(loss={float(step_metrics['loss'])}); lower config.finetune.optim.base_lr")
    val = evaluate_split(val_batches, logits_fn, state, mesh, info.num_classes)
    history.append({'step': step, 'loss': float(step_metrics['loss']), 'val_' + select: val[select]})
    logging.info('step %d loss %.4f val %s %.4f', step, float(step_metrics['loss']), select,
                 val[select])
    bar.update(step, {'loss': float(step_metrics['loss']), 'val ' + select: val[select]})
    if best is None or val[select] > best[0]:
      # Kept on the host: the device state is donated to the next step.
      best, best_step, since_best = (val[select], jax.device_get(state), val), step, 0
    else:
      since_best += 1
      if config.finetune.patience and since_best >= config.finetune.patience:
        logging.info('early stop at step %d (best step %d)', step, best_step)
        break
  bar.close()
  _, best_state, val = best
  best_state = jax.device_put(best_state, parallel.replicated(mesh))
  test_batches = split_batches(config, workdir, 'test')  # scored once: streamed
  result = evaluate_split(test_batches, logits_fn, best_state, mesh, info.num_classes,
                          positive, keep_predictions=True)
  result.update(protocol='supervised' if config.supervised_control else 'finetune',
                label_fraction=config.label_fraction, num_train=int(len(subset)),
                best_step=best_step, total_steps=total_steps, batch_size=batch_size,
                val_top1=val['top1'], val_balanced_accuracy=val['balanced_accuracy'],
                init_from=config.init_from, finetune_from=config.finetune_from,
                class_names=list(info.class_names), history=history)
  if distributed.is_main_process():  # before metrics.json: a finished run has its model
    trained_model.save_classifier(workdir, train_state.merge(graphdef, best_state), config,
                                  info.class_names, result['protocol'])
  run_results.write_results(workdir, result)
  return result
