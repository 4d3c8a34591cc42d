// The model's front end fed chunk by chunk: samples at the model's rate -> the model's steps as
// they complete. Both front ends of audio::Preprocessing: the block average (one channel) and
// the log-mel band energies (LogMel::bands channels, models/frontend.py's arithmetic). Used by
// ModelService.StreamInfer, and by preprocess() for the log-mel front end, so that a stream and
// a whole clip give the same steps by construction.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "xbar/audio/audio.h"
#include "xbar/base/error.h"

namespace xbar::audio {

/// One stream's front end. push() returns the steps its samples complete, finish() the last,
/// partial one; the steps are steps x channels() floats, step-major.
///
///  - Block average (no log_mel): step k is the mean of samples [k*downsample, (k+1)*downsample),
///    summed as preprocess() sums them (bit for bit its steps), but never peak-normalised: a
///    stream cannot know its peak before its end. finish() returns the mean of the samples of a
///    partial block, if any.
///  - Log-mel: step t is models/frontend.py's step t (the frame ending with the step's hop; the
///    reference a running maximum when `normalise`), so the steps are exactly preprocess()'s on
///    the whole clip, before padding, however the samples are cut into chunks. finish()
///    zero-pads a partial hop (frontend.py step 2) and returns its step, if any.
/// target_length is ignored: a stream is neither padded nor truncated.
///
/// Ownership and threading: the object owns everything it computes with (the FFT plan, built
/// once in create(), the window and filterbank, the last frame's samples, the running
/// reference); nothing is shared between objects, so objects on different threads are
/// independent. One object is not thread-safe (Eigen::FFT and the stream's state change on
/// every push): calls on it must not overlap. It may be moved to another thread between calls;
/// a moved-from object may only be destroyed or assigned to.
class StreamingFrontEnd {
 public:
  /// The front end of `p` (validated as validate(p); the message names the field).
  static Result<StreamingFrontEnd> create(const Preprocessing& p);

  StreamingFrontEnd(StreamingFrontEnd&&) noexcept;
  StreamingFrontEnd& operator=(StreamingFrontEnd&&) noexcept;
  StreamingFrontEnd(const StreamingFrontEnd&) = delete;
  StreamingFrontEnd& operator=(const StreamingFrontEnd&) = delete;
  ~StreamingFrontEnd();

  /// Mono samples at the preprocessing's rate (linear, full scale = 1) -> the steps they
  /// complete (possibly none). kInvalidArgument for a non-finite sample ("samples[i] = nan:
  /// not finite"), and kFailedPrecondition after finish(); either way nothing is consumed.
  Result<std::vector<float>> push(std::span<const float> samples);

  /// Ends the stream: the last, partial step (empty when the samples filled whole steps, or
  /// when finish() was called before). push() refuses samples afterwards.
  std::vector<float> finish();

  /// Values per step: 1 or LogMel::bands.
  int channels() const;
  /// Steps returned so far (push and finish).
  int64_t steps() const;

 private:
  struct State;
  explicit StreamingFrontEnd(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace xbar::audio
