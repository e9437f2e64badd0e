"""``render_mode="rgb_array"``: a frame per env, drawn by gymnasium's renderer from fastrl's state,
and gymnasium's RecordVideo over it. Rendering needs pygame (``pip install fastrl[render]``), and
RecordVideo moviepy: those tests skip without them."""

import importlib.util

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.wrappers.vector import RecordVideo

import fastrl.envs as fenvs
from tests.envs.helpers import inject, sample_actions, to_torch_actions

needs_pygame = pytest.mark.skipif(importlib.util.find_spec("pygame") is None,
                                  reason="pygame is not installed (pip install fastrl[render])")
needs_moviepy = pytest.mark.skipif(importlib.util.find_spec("moviepy") is None,
                                   reason="moviepy is not installed (pip install fastrl[render])")


@needs_pygame
@pytest.mark.parametrize("env_id", fenvs.NATIVE_ENVS)
def test_frames_are_gymnasiums_of_the_same_states(env_id, backend):
    n = 3
    env = fenvs.make(env_id, n, dtype=torch.float64, seed=0, render_mode="rgb_array")
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(5):
        env.step(to_torch_actions(sample_actions(env_id, rng, n), env))
    frames = env.render()
    assert isinstance(frames, tuple) and len(frames) == n
    states = env.get_state()
    for i, frame in enumerate(frames):
        genv = gymnasium.make(env_id, render_mode="rgb_array")
        genv.reset(seed=0)
        inject(genv, env_id, states[i].tolist(), 0)
        if env_id == "Pendulum-v1":
            genv.unwrapped.last_u = None  # fastrl does not keep the last torque: no arrow is drawn
        expected = genv.render()
        assert frame.dtype == np.uint8 and frame.shape == expected.shape
        np.testing.assert_array_equal(frame, expected)
    # Different states, different frames: the frames follow each env's state.
    assert not np.array_equal(frames[0], frames[1])
    env.close()


@needs_pygame
@needs_moviepy
def test_record_video(tmp_path, backend):
    env = fenvs.make("CartPole-v1", 4, seed=0, render_mode="rgb_array")
    folder = tmp_path / "videos"
    env = RecordVideo(fenvs.TorchToNumpy(env), str(folder), episode_trigger=lambda episode: episode < 2)
    env.reset(seed=0)
    for _ in range(60):
        env.step(np.ones(4, dtype=np.int64))
    env.close()
    videos = sorted(p.name for p in folder.glob("*.mp4"))
    assert videos == ["rl-video-episode-0.mp4", "rl-video-episode-1.mp4"]


def test_render_modes():
    env = fenvs.make("CartPole-v1", 2, seed=0)
    assert env.render_mode is None and env.metadata["render_fps"] == 50
    env.reset()
    with pytest.warns(UserWarning, match="no render_mode"):
        assert env.render() is None
    with pytest.raises(ValueError, match="render_mode must be None or 'rgb_array'"):
        fenvs.make("CartPole-v1", 2, render_mode="human")
    env = gymnasium.make_vec("fastrl/Pendulum-v1", 2, render_mode="rgb_array")
    assert env.render_mode == "rgb_array" and env.metadata["render_fps"] == 30
