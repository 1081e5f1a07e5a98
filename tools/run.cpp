// `dbsp run`: its options and their checks; the work is run_ranks (run_ranks.cpp, real ranks under
// mpirun) or run_emulated (run_emulated.cpp, --emulate P).
#include <memory>
#include <string>

#include "commands.hpp"
#include "cost_options.hpp"
#include "dbsp/error.hpp"
#include "run_shared.hpp"

namespace dbsp::cli {

void register_run(CLI::App& app) {
  auto options = std::make_shared<RunOptions>();
  CLI::App* command = app.add_subcommand(
      "run", "sequence-parallel attention over MPI ranks (start with mpirun -np P)");
  options->source.add_to(*command);
  command
      ->add_option("--strategy", options->strategy,
                   "ulysses | ring | usp[:UxR] | dbsp-paper[:UxR] | dbsp[:UxR] | dbsp-shared[:UxR] "
                   "(with --emulate: "
                   "also all, or "
                   "a comma-separated list of these)")
      ->capture_default_str();
  command->add_option("--layers", options->layers, "layers to run (0: all)")->capture_default_str();
  command->add_option("--steps", options->steps, "denoising steps to run")->capture_default_str();
  command
      ->add_option("--backend", options->backend,
                   "cpu (MPI, host fp32) or cuda (NCCL, bf16 on one GPU per rank)")
      ->capture_default_str();
  command->add_flag("--check", options->check,
                    "compare every output shard with the fp64 single-rank reference; exit 1 on a "
                    "mismatch");
  command
      ->add_option("--tolerance", options->tolerance,
                   "tolerance of --check (0: 1e-4 on cpu, relative L2 and largest error over "
                   "the largest reference element; 1e-2 relative L2 on cuda, "
                   "which must also stay within 2x the naive bf16 path's max error)")
      ->capture_default_str();
  command
      ->add_option("--check-blocks", options->check_blocks,
                   "check only the first N query blocks of each rank's shard (0: all)")
      ->capture_default_str();
  command
      ->add_option("--timeout", options->timeout, "seconds a rank waits for a peer before failing")
      ->capture_default_str();
  command
      ->add_option("--head-dim", options->head_dim,
                   "head dimension (0: the workload's; 64 for --mask)")
      ->capture_default_str();
  command
      ->add_option("--warmup", options->warmup,
                   "untimed calls on every grid the strategy may use before the run")
      ->capture_default_str();
  command->add_flag("--send-all", options->send_all,
                    "turn mask-aware communication off (send every slab)");
  command
      ->add_option("--ring-reserved-sms", options->ring_reserved_sms,
                   "cuda: SMs the attention kernel leaves free while a transfer runs beside it "
                   "(the next ring step's K/V, or with --head-chunks the other chunks' "
                   "all-to-alls; 0: none, the transfer then waits for the kernel)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  command->add_flag("--no-ring-overlap", options->no_ring_overlap,
                    "cuda, diagnostics: each ring step computes only after the next step's K/V "
                    "has arrived (compute times without a transfer beside the kernel)");
  command->add_flag("--no-finite-check", options->no_finite_check,
                    "skip the scan of each layer's output for NaN and Inf (SpOptions::"
                    "check_finite): for inputs already checked upstream, or to time the scan");
  command->add_flag("--no-split-rows", options->no_split_rows,
                    "cuda: one-head chunks keep their long rows whole (SpOptions::"
                    "split_long_rows off), to time what splitting them gains");
  command
      ->add_option("--split-step-heads", options->split_step_heads,
                   "cuda: ring-step kernels (and whole layers without chunks) of at most this "
                   "many heads split their long rows too (SpOptions::split_step_heads; 0: none)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  command->add_option("--batch", options->batch, "batch elements per layer call (one plan)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  command
      ->add_option("--head-chunks", options->head_chunks,
                   "cuda, grids without a ring: exchange and compute the heads in this many "
                   "chunks so that all-to-alls overlap attention (1: the whole layer at once; "
                   "0: auto, 3 where the grid has two ranks or more, else 1); --emulate times "
                   "each chunk's kernel, charges it --beside-slowdown and overlaps the chunks' "
                   "transfers as the executor does")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  CLI::Option* estimate =
      command->add_flag("--estimate", options->estimate,
                        "estimate each layer's mask from the run's Q and K (each rank pools its "
                        "own shard; Q and K are the workload's, V seeded; --mask gives only the "
                        "shapes, with seeded Q, K and V)");
  command
      ->add_flag("--uniform-inputs", options->uniform_inputs,
                 "--estimate with --workload: seeded uniform Q and K instead of the workload's "
                 "(nearly dense estimated masks)")
      ->needs(estimate);
  command
      ->add_option("--tau", options->tau,
                   "--estimate: share of the pooled softmax mass kept per query block, in (0, 1]")
      ->capture_default_str()
      ->needs(estimate);
  command
      ->add_option("--reuse-threshold", options->planner.reuse_threshold,
                   "P_s: re-plan when rho_s of the kept plan exceeds this")
      ->capture_default_str();
  command
      ->add_option("--emulate", options->emulate,
                   "run this many virtual ranks in one process (no mpirun); --strategy all "
                   "compares every static grid with dbsp-paper and dbsp (all,dbsp:8x2 adds one); "
                   "--backend picks where "
                   "the kernels run; --link-gbps and --latency-us price the transfers")
      ->capture_default_str();
  command
      ->add_option("--beside-slowdown", options->beside_slowdown,
                   "--emulate: how much slower a ring step's kernel runs beside the next step's "
                   "transfer (0.07 measured on 2 x H200; 0: no contention)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  command->add_flag("--rank-times", options->rank_times,
                    "--emulate, diagnostics: per layer call of grids without a ring, each rank's "
                    "measured compute and its group's predicted work, both over their means, "
                    "and with head chunks each chunk's all-to-alls and when its output leaves");
  CLI::Option* fine_keep = command->add_option(
      "--fine-keep", options->fine_keep,
      "fine (FG-Attn, M x 1) masks: keep a seeded share F in (0, 1] of every kept block's keys "
      "(at least one; 1 keeps whole blocks), the same on every rank; --check uses the fine "
      "reference (--backend cuda: with the naive bf16 fine path, bf16 inputs); not with "
      "--estimate; --emulate (cpu or cuda) times the kernels on each rank's local fine masks");
  command->add_flag(
      "--plan-ahead", options->plan_ahead,
      "start each layer call's host work (mask hash, plan, this rank's schedule) on a background "
      "thread while the call before it runs (SpAttention::plan_ahead); block or fine "
      "(--fine-keep) masks, not with --estimate; --emulate charges each call only the host work "
      "(plan and setup) that outlasts the call before it");
  add_cost_options(*command, options->cost);
  // The emulator times the executor's staging copies unless a rate is given (the planner's cost
  // model takes the option either way).
  const CLI::Option* copy_rate = command->get_option("--copy-gbps");
  command->callback([options, fine_keep, copy_rate] {
    options->copy_rate_given = copy_rate->count() > 0;
    require(!(options->estimate && options->emulate > 0),
            "--estimate runs on ranks (mpirun), not with --emulate");
    options->fine = fine_keep->count() > 0;
    require(!(options->plan_ahead && options->estimate),
            "--plan-ahead needs the masks before the calls; it does not combine with --estimate");
    if (options->fine) {
      const double keep = options->fine_keep;
      require(keep > 0 && keep <= 1, "--fine-keep: expected a share in (0, 1], got ", keep);
      require(!options->estimate,
              "--fine-keep thins the source's block masks; it does not combine with --estimate");
    }
    const int code = options->emulate > 0 ? run_emulated(*options) : run_ranks(*options);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace dbsp::cli
