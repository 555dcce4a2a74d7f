#include <fmt/format.h>

#include "cmd/commands.h"
#include "core/base/log.h"
#include "core/base/strings.h"
#include "models/model_spec.h"

namespace cr {

int run_presets_command() {
  print0("{:<14} {:<6} {:>6} {:>6} {:>8} {:>8} {:>16}  {}", "preset", "arch", "layers", "heads", "d_model", "vocab",
         "parameters", "description");
  for (const ModelPreset& preset : model_presets()) {
    const ModelSpec& spec = preset.spec;
    print0("{:<14} {:<6} {:>6} {:>6} {:>8} {:>8} {:>16}  {}", preset.name, spec.arch, spec.n_layer, spec.n_head,
           spec.d_model, spec.vocab_size, with_thousands(parameter_count(spec)), preset.description);
  }
  print0("use one with `model: {{preset: NAME}}` or `--set model.preset=NAME`; `plan` shows its memory per rank");
  return 0;
}

}  // namespace cr
