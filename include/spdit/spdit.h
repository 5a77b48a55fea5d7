#pragma once
// Umbrella header: everything a model or an application uses.
#include "spdit/runtime/comm.h"
#include "spdit/runtime/comm_counters.h"
#include "spdit/runtime/parallel_state.h"
#include "spdit/runtime/world.h"
#include "spdit/plan/sp_config.h"
#include "spdit/plan/sp_plan.h"
#include "spdit/hooks/value.h"
#include "spdit/hooks/hook_registry.h"
#include "spdit/hooks/hookable.h"
#include "spdit/hooks/forward_context.h"
#include "spdit/hooks/sequence_parallel.h"
