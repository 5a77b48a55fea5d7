#pragma once
// Private: the tensor side of the plan's hooks.
#include <ATen/ATen.h>

#include <string>

#include "spdit/hooks/forward_context.h"
#include "spdit/plan/sp_config.h"
#include "spdit/plan/sp_plan.h"

namespace spdit::detail {

/// Keeps this rank's shard of `t` along the spec's dim (padding first when
/// auto_pad asks, or when this length was auto-padded earlier in the call).
/// `where` names module and argument for errors and warnings.
at::Tensor split_input(ForwardContext& ctx, const SequenceParallelConfig& cfg, const at::Tensor& t,
                       const SequenceParallelInput& spec, const std::string& where);

/// Keeps the first `text_len` entries whole and splits the rest.
at::Tensor split_partial(ForwardContext& ctx, const SequenceParallelConfig& cfg,
                         const at::Tensor& t, const SequenceParallelPartialInput& spec,
                         int64_t text_len, const std::string& where);

/// All-gathers along the spec's dim over the SP group, trimming auto_pad padding.
at::Tensor gather_output(ForwardContext& ctx, const SequenceParallelConfig& cfg,
                         const at::Tensor& t, const SequenceParallelOutput& spec,
                         const std::string& where);

}  // namespace spdit::detail
