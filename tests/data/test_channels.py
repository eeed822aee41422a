"""Images with any number of channels (config.data.channels): loading grey, multi-page and
multi-channel files, the mismatch error, the stem and the ImageNet stem import, the
baseline's features, and pretraining end to end on grey cells with both backends."""

import numpy as np
import pytest
from flax import nnx
from PIL import Image

from simclr_jax.data import channels as channels_lib
from simclr_jax.data import folder, pipeline, sources, synthetic
from simclr_jax.evaluation import baseline
from simclr_jax.models import encoder_export, pretrained, resnet, torchvision_export
from simclr_jax.training import loop
from tiny_configs import load_config



@pytest.fixture(name='tifffile')
def _tifffile():
  # tifffile is in requirements.txt; it both writes these tests' files and reads
  # multi-sample TIFFs, which Pillow cannot.
  return pytest.importorskip('tifffile')


def _folder_config(path, channels, **data):
  config = load_config(**{'data.name': 'folder', 'data.path': str(path),
                          'data.channels': channels, 'data.split': (0.5, 0.25, 0.25)})
  config.data.update(data)
  return config


def _write_class_folders(root, write, per_class=4):
  rng = np.random.default_rng(0)
  for label in ('a', 'b'):
    (root / label).mkdir(parents=True)
    for i in range(per_class):
      write(root / label / f'{i}.tif', rng)


def test_16_bit_grey_tiffs_load_as_one_channel_with_one_fixed_scale(tmp_path, tifffile):
  def write(path, rng):
    tifffile.imwrite(path, rng.integers(0, 4096, (12, 10)).astype(np.uint16))
  _write_class_folders(tmp_path, write)
  # The same 12-bit pixel values scale alike in every image: v * 255 / 4095.
  raw = tifffile.imread(tmp_path / 'a' / '0.tif')
  decoded = folder.decode(tmp_path / 'a' / '0.tif', 1, 4095)
  np.testing.assert_array_equal(decoded[..., 0], np.round(raw * (255 / 4095)).astype(np.uint8))
  # A 3-channel config repeats the grey image; the default scale is the 16-bit range.
  rgb = folder.decode(tmp_path / 'a' / '0.tif', 3)
  np.testing.assert_array_equal(rgb, np.repeat(np.round(raw * (255 / 65535))[..., None], 3, 2))
  source = sources.load(_folder_config(tmp_path, 1, uint16_max=4095), None)
  images, _ = source.splits['train'][0].fetch(np.arange(len(source.splits['train'][1])))
  assert images.shape[1:] == (12, 10, 1) and images.max() > 200


@pytest.mark.parametrize('layout', ['pages', 'samples'])
def test_multi_page_and_multi_channel_tiffs_load_as_c_channels(tmp_path, layout, tifffile):
  def write(path, rng):
    stack = rng.integers(0, 256, (5, 9, 11)).astype(np.uint8)  # channel c = stack[c]
    if layout == 'pages':
      tifffile.imwrite(path, stack, photometric='minisblack', metadata=None)
    else:
      tifffile.imwrite(path, np.moveaxis(stack, 0, -1), photometric='minisblack',
                       planarconfig='contig')
    np.save(path.with_suffix('.npy'), stack)
  _write_class_folders(tmp_path, write, per_class=3)
  expected = np.load(tmp_path / 'b' / '1.npy')
  np.testing.assert_array_equal(folder.decode(tmp_path / 'b' / '1.tif', 5),
                                np.moveaxis(expected, 0, -1))
  config = _folder_config(tmp_path, 5)
  batch = next(pipeline.labelled_iterator(config, None, 'train', batch_size=2, augment=True,
                                          shuffle=True, repeat=True))
  assert batch['image'].shape == (2, 16, 16, 5)


def test_a_channel_mismatch_names_the_file_its_channels_and_the_setting(tmp_path, tifffile):
  def write(path, rng):
    tifffile.imwrite(path, rng.integers(0, 256, (4, 8, 8)).astype(np.uint8),
                     photometric='minisblack', metadata=None)
  _write_class_folders(tmp_path, write, per_class=2)
  with pytest.raises(channels_lib.ChannelError,
                     match=r'\.tif is a 4-channel image .*config\.data\.channels=3'):
    sources.load(_folder_config(tmp_path, 3), None)
  # An RGB file with colour is no grey image; one saved grey-as-RGB is.
  colour = tmp_path / 'colour.png'
  Image.fromarray(np.random.default_rng(1).integers(0, 256, (6, 6, 3), np.uint8)).save(colour)
  with pytest.raises(channels_lib.ChannelError, match='RGB image.*channels=1'):
    folder.decode(colour, 1)
  grey_rgb = tmp_path / 'grey_rgb.png'
  Image.fromarray(np.full((6, 6, 3), 77, np.uint8)).save(grey_rgb)
  np.testing.assert_array_equal(folder.decode(grey_rgb, 1), np.full((6, 6, 1), 77))


@pytest.mark.parametrize('mode', ['1', 'L', 'P', 'RGB', 'RGBA', 'RGBX', 'LA', 'I', 'F',
                                  'I;16', 'I;16B', 'CMYK', 'YCbCr'])
def test_tiffs_read_by_tifffile_equal_pillows_reading(tmp_path, mode, tifffile):
  del tifffile  # read_channels takes it when installed
  rng = np.random.default_rng(7)
  image = Image.frombytes(mode, (7, 5), rng.bytes(len(Image.new(mode, (1, 1)).tobytes()) * 35))
  path = tmp_path / 'x.tif'
  image.save(path)
  pillow = channels_lib.fit_channels(channels_lib.to_uint8(channels_lib._read_pillow(path)),  # pylint: disable=protected-access
                                     3, path)
  np.testing.assert_array_equal(folder.decode(path, 3), pillow)


def test_a_broken_first_file_is_skipped_while_the_channels_are_checked(tmp_path, caplog):
  # A truncated JPEG passes the header check and fails only when decoded.
  # An unlabelled folder's files load in name order: 0.jpg is the first.
  rng = np.random.default_rng(0)
  extra = tmp_path.parent / f'{tmp_path.name}_extra'
  for folder_path in (tmp_path / 'a', tmp_path / 'b', extra):
    folder_path.mkdir()
    for i in range(3):
      Image.fromarray(rng.integers(0, 256, (32, 32), np.uint8)).save(folder_path / f'{i}.jpg')
  whole = (extra / '0.jpg').read_bytes()
  (extra / '0.jpg').write_bytes(whole[:len(whole) // 2])
  config = _folder_config(tmp_path, 1, extra_unlabeled=str(extra))
  assert len(sources.load(config, None).extra) == 2
  assert '0.jpg' in caplog.text


def test_synthetic_cells_in_grey_and_c_channels_are_the_rgb_cells_converted():
  rgb, labels = synthetic.generate(6, 20, seed=3)
  grey, grey_labels = synthetic.generate(6, 20, seed=3, channels=1)
  np.testing.assert_array_equal(labels, grey_labels)
  luma = rgb.astype(np.float64) @ [0.299, 0.587, 0.114]
  np.testing.assert_array_equal(grey[..., 0], np.round(luma).astype(np.uint8))
  five, _ = synthetic.generate(6, 20, seed=3, channels=5)
  np.testing.assert_array_equal(five[..., :3], rgb)
  np.testing.assert_array_equal(five[..., 3:], 255 - rgb[..., :2])


def _encoder(channels, input_norm='none'):
  return resnet.build_resnet('resnet18', width=1.0, in_channels=channels,
                             input_norm=input_norm, rngs=nnx.Rngs(0))


def _torchvision_file(tmp_path):
  """A torchvision ResNet-18 state dict with random weights, from our own RGB encoder."""
  rgb = _encoder(3, 'imagenet')
  path = tmp_path / 'resnet18.safetensors'
  from simclr_jax.models import weight_files  # pylint: disable=g-import-not-at-top
  weight_files.write_safetensors(str(path), torchvision_export.torchvision_state_dict(rgb),
                                 {'format': 'pt'})
  return rgb, str(path)


def test_imagenet_stem_into_grey_and_c_channel_stems(tmp_path):
  rgb, path = _torchvision_file(tmp_path)
  rgb_kernel = np.asarray(rgb.stem.conv.kernel[...])  # [7, 7, 3, 64]
  grey = _encoder(1, 'imagenet')
  pretrained.load_encoder_weights(path, grey)
  # A grey image repeated to RGB gives the RGB stem exactly the grey stem's output.
  x = np.random.default_rng(0).random((2, 32, 32, 1)).astype(np.float32)
  ours = grey.stem.conv(x)
  theirs = rgb.stem.conv(np.repeat(x, 3, axis=-1))
  np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(grey.stem.conv.kernel[...])[:, :, 0],
                             rgb_kernel.astype(np.float64).sum(2), rtol=1e-6, atol=1e-7)
  five = _encoder(5, 'imagenet')
  pretrained.load_encoder_weights(path, five)
  expected = rgb_kernel[:, :, [0, 1, 2, 0, 1]] * (3 / 5)
  np.testing.assert_allclose(np.asarray(five.stem.conv.kernel[...]), expected, rtol=1e-6)
  # Everything after the stem is the file's, unchanged.
  np.testing.assert_array_equal(np.asarray(five.stages[0][0].conv1.conv.kernel[...]),
                                np.asarray(rgb.stages[0][0].conv1.conv.kernel[...]))
  # The torchvision export writes the C-channel conv1.
  state = torchvision_export.torchvision_state_dict(five)
  assert state['conv1.weight'].shape == (64, 5, 7, 7)


def test_input_norm_for_other_than_rgb_uses_the_colours_mean_statistics():
  x = np.full((1, 2, 2, 4), 0.5, np.float32)
  np.testing.assert_allclose(resnet.normalize_input(x, 'imagenet'),
                             (0.5 - np.mean([0.485, 0.456, 0.406])) / np.mean([0.229, 0.224, 0.225]),
                             rtol=1e-6)
  np.testing.assert_allclose(resnet.normalize_input(x, 'caffe'),
                             127.5 - np.mean([103.939, 116.779, 123.68]), rtol=1e-6)


def test_baseline_features_for_grey_and_c_channels():
  rng = np.random.default_rng(0)
  for channels in (1, 5):
    images = rng.random((3, 16, 16, channels)).astype(np.float32)
    features = baseline.colour_texture_features(images)
    # Per channel: a 16-bin histogram, a mean and a std; the rest is of the grey level.
    rgb_size = baseline.colour_texture_features(rng.random((3, 16, 16, 3))).shape[1]
    assert features.shape == (3, rgb_size + (channels - 3) * 18)
    np.testing.assert_allclose(features[:, -channels:], images.reshape(3, -1, channels).std(1),
                               rtol=1e-5)
    assert baseline.pixel_features(images, 4).shape == (3, 16 * channels)


@pytest.mark.parametrize('backend', ['host', 'device'])
def test_pretraining_on_grey_cells_end_to_end(tmp_path, backend):
  config = load_config(**{'data.channels': 1, 'augment.backend': backend, 'num_steps': 2,
                          'checkpoint_every_steps': 2, 'augment.preset': 'cytology'})
  loop.train_and_evaluate(config, str(tmp_path))
  encoder = encoder_export.load_encoder(str(tmp_path / encoder_export.EXPORT_DIR))
  assert encoder.stem.conv.kernel.shape[2] == 1
  h = encoder(np.zeros((2, 16, 16, 1), np.float32), train=False)
  assert np.isfinite(np.asarray(h)).all()
  # A run from this checkpoint with other channels says what to set.
  other = load_config(**{'init_from': str(tmp_path)})
  from simclr_jax.training import init_from  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=r'pretrained on 1-channel images.*channels=1'):
    init_from.adopt_model_settings(other)
