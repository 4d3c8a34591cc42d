#include "board_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "call.h"
#include "status.h"

namespace xbar::server {

namespace {
void fill_range(v1::VoltageRange* out, const VoltageRange& r) {
  out->set_lo_v(r.lo_V);
  out->set_hi_v(r.hi_V);
}
}  // namespace

grpc::Status BoardServiceImpl::GetBoardInfo(grpc::ServerContext*, const v1::GetBoardInfoRequest*,
                                            v1::BoardInfo* out) {
  const BoardInfo& i = board_.info();
  out->set_serial(i.serial);
  out->set_firmware_version(i.firmware_version);
  out->set_protocol_version(static_cast<uint32_t>(i.protocol_version));
  out->set_backend(i.backend);
  out->set_link(i.link);
  out->set_simulated(i.is_sim);
  out->set_arrays(static_cast<uint32_t>(i.arrays));
  out->set_rows(static_cast<uint32_t>(i.rows));
  out->set_cols(static_cast<uint32_t>(i.cols));
  out->set_adc_bits(static_cast<uint32_t>(i.adc_bits));
  out->set_adc_v_lo_v(i.adc_v_lo_V);
  out->set_adc_v_hi_v(i.adc_v_hi_V);
  out->set_tia_v_ref_v(i.tia_v_ref_V);
  for (size_t g = 0; g < i.tia_gains_ohm.size(); ++g) {
    out->add_tia_gains_ohm(i.tia_gains_ohm[g]);
    out->add_full_scale_us(i.full_scale_uS(static_cast<int>(g)));
  }
  out->set_v_read_v(i.v_read_V);
  out->set_dac_bits(static_cast<uint32_t>(i.dac_bits));
  out->set_dac_v_min_v(i.dac_v_min_V);
  out->set_dac_v_max_v(i.dac_v_max_V);
  out->set_width_step_ns(i.width_step_ns);
  out->set_width_max_ns(i.width_max_ns);
  fill_range(out->mutable_set_v(), i.set_v);
  fill_range(out->mutable_set_gate(), i.set_gate);
  fill_range(out->mutable_reset_v(), i.reset_v);
  fill_range(out->mutable_reset_gate(), i.reset_gate);
  out->set_max_read_avg(static_cast<uint32_t>(i.max_read_avg));
  return grpc::Status::OK;
}

grpc::Status BoardServiceImpl::GetBoardStatus(grpc::ServerContext*,
                                              const v1::GetBoardStatusRequest*,
                                              v1::BoardStatus* out) {
  auto s = board_.status();
  if (!s) return to_status(s.error());
  out->set_uptime_ns(s->uptime_ns);
  out->set_ops_executed(s->ops_executed);
  out->set_pulses_applied(s->pulses_applied);
  out->set_replays_served(s->replays_served);
  out->set_last_error(static_cast<uint32_t>(s->last_error));
  return grpc::Status::OK;
}

grpc::Status BoardServiceImpl::ReadConductances(grpc::ServerContext* ctx,
                                                const v1::ReadConductancesRequest* req,
                                                grpc::ServerWriter<v1::ConductanceChunk>* writer) {
  const BoardInfo& info = board_.info();
  if (req->array() >= static_cast<uint32_t>(info.arrays)) {
    return invalid_argument(
        fmt::format("array = {}: allowed 0..{}", req->array(), info.arrays - 1));
  }
  const uint32_t n_gains = static_cast<uint32_t>(info.tia_gains_ohm.size());
  const uint32_t gain = req->has_gain_index() ? req->gain_index() : 2;
  if (gain >= n_gains) {
    return invalid_argument(fmt::format("gain_index = {}: allowed 0..{}", gain, n_gains - 1));
  }
  const uint32_t n_avg = req->n_avg() == 0 ? 1 : req->n_avg();
  if (n_avg > static_cast<uint32_t>(info.max_read_avg)) {
    return invalid_argument(
        fmt::format("n_avg = {}: allowed 1..{} (0 means 1)", n_avg, info.max_read_avg));
  }
  const uint32_t rows = static_cast<uint32_t>(info.rows), cols = static_cast<uint32_t>(info.cols);
  const uint32_t per_chunk = req->rows_per_chunk() == 0 ? 16 : req->rows_per_chunk();
  if (per_chunk > rows) {
    return invalid_argument(
        fmt::format("rows_per_chunk = {}: allowed 1..{} (0 means 16)", per_chunk, rows));
  }
  Result<ConductanceMap> map = [&]() -> Result<ConductanceMap> {
    auto turn = sched_.board.acquire(client_of(ctx), limits_of(ctx));
    if (!turn) return std::unexpected(turn.error());
    return board_.read_array(static_cast<int>(req->array()),
                             {static_cast<int>(gain), static_cast<int>(n_avg)});
  }();
  if (!map) return to_status(map.error());
  const double full_scale_uS = info.full_scale_uS(static_cast<int>(gain));
  for (uint32_t first = 0; first < rows; first += per_chunk) {
    if (ctx->IsCancelled()) return {grpc::StatusCode::CANCELLED, "client cancelled the read"};
    v1::ConductanceChunk chunk;
    const uint32_t n = std::min(per_chunk, rows - first);
    chunk.set_array(req->array());
    chunk.set_first_row(first);
    chunk.set_rows(n);
    chunk.set_cols(cols);
    chunk.set_gain_index(gain);
    chunk.set_n_avg(n_avg);
    uint32_t saturated = 0;
    for (uint32_t r = first; r < first + n; ++r) {
      for (uint32_t c = 0; c < cols; ++c) {
        const double g = map->g_uS(r, c);
        if (g >= full_scale_uS - 1e-9) ++saturated;
        chunk.add_g_us(static_cast<float>(g));
      }
    }
    chunk.set_saturated(saturated);
    if (!writer->Write(chunk)) return {grpc::StatusCode::CANCELLED, "client went away"};
  }
  return grpc::Status::OK;
}

}  // namespace xbar::server
