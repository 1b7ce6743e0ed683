#include "server/service/env_flags.h"
#include "server/service/string_views.h"

#include <cstdlib>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace kvq {

std::string EnvVarForFlag(std::string_view flag_name) {
  return absl::StrCat("KVQ_", absl::AsciiStrToUpper(ToAbsl(flag_name)));
}

absl::Status ApplyEnvOverrides(std::span<const std::string_view> flag_names) {
  for (std::string_view name : flag_names) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(ToAbsl(name));
    if (flag == nullptr) {
      return absl::InternalError(
          absl::StrCat("no flag named --", ToAbsl(name), " to take from the environment"));
    }
    const std::string variable = EnvVarForFlag(name);
    const char* value = std::getenv(variable.c_str());
    if (value == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(absl::StrCat(
          variable, "=\"", value, "\" is not a valid value for --", ToAbsl(name), ": ",
          error));
    }
  }
  return absl::OkStatus();
}

}  // namespace kvq
