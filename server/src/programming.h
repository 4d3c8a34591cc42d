// Program-verify with the chip record kept in step: shared by ProgramArray and DeployKernel.
#pragma once

#include <functional>

#include "chip_record.h"
#include "xbar/drivers/board.h"
#include "xbar/drivers/fault_scan.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/v1/arrays.pb.h"

namespace xbar::server {

/// Runs program_verify on `array` and keeps the record in step: each round's pulses are added
/// to the endurance counters before the batch is sent (write-ahead), and at the end the
/// programming record (target, read-back) and the faults program-verify revealed are written
/// in one transaction. `on_round` sees every round (return false to cancel). The caller holds
/// the board lock.
/// Told the device pulses applied and the devices abandoned by a program_and_record run
/// (the daemon's metrics).
using ProgrammingObserver = std::function<void(uint64_t pulses, uint64_t abandoned)>;

/// `before_first_pulse`, when given, runs once, just before the first batch is counted and
/// sent (e.g. marking the deployment on the array stale, write-ahead): a run that pulses
/// nothing (refused, cancelled while waiting, every device already on target) changes nothing
/// else either. An error there stops the run before any pulse and is returned. `observer`,
/// when given, is told what the run applied.
Result<ProgramVerifyResult> program_and_record(
    Board& board, ChipRecord& record, int array, const Eigen::MatrixXd& target_uS,
    const ProgramVerifyConfig& cfg, const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>& skip,
    const std::function<bool(const ProgramVerifyProgress&)>& on_round,
    const std::function<Result<void>()>& before_first_pulse = {},
    const ProgrammingObserver& observer = {});

/// The API's summary of a run: within-tolerance %, error sigma, rounds, pulses per device,
/// abandoned devices, the final read-back.
void fill_program_report(const ProgramVerifyResult& res, const ProgramVerifyConfig& cfg,
                         v1::ProgramReport* rep);

/// One progress message of a round.
void fill_round(const ProgramVerifyProgress& p, int max_rounds, v1::ProgramRound* r);

/// Fault findings -> record entries.
std::vector<FaultEntry> fault_entries(const std::vector<FaultFinding>& findings, int array);

}  // namespace xbar::server
