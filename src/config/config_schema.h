// The run configuration's schema, internal to src/config: every key, in file order, bound to its
// struct member.
//
// One table drives parsing, --set overrides, unknown-key suggestions, to_toml(), the finiteness
// check in validate() and the tests' field-by-field comparison, so adding a key means one line
// here (plus its range in validate.cc and its row in docs/config.md; a test checks the docs).
// The pointers in a Field point into the RunConfig passed in; they live as long as it does.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/run_config.h"

namespace sy::config_schema {

using FieldPtr = std::variant<int64_t*, uint64_t*, double*, std::string*>;

struct Field {
  std::string_view name;  // key within its section: "d_model"
  FieldPtr ptr;
};

// A section with fixed keys. name "" is the top level (out_dir). The balance terms are an array of
// tables and are handled apart (term_fields).
struct Section {
  std::string_view name;
  std::vector<Field> fields;
};

std::vector<Section> sections(RunConfig& cfg);
std::vector<Field> term_fields(BalanceTerm& term);

// "model" + "d_model" -> "model.d_model"; "" + "out_dir" -> "out_dir".
std::string full_key(std::string_view section, std::string_view name);

// Every valid dotted key (and section name), for "did you mean". Term keys are spelled with the
// given index: "balance.terms.<term_index>.coef".
std::vector<std::string> all_keys(size_t term_index = 0);

// Throws sy::Error "<origin>: <key> must be <constraint>, got <got>" + "; <hint>" if any.
[[noreturn]] void fail_key(std::string_view origin, std::string_view key,
                           std::string_view constraint, std::string_view got,
                           std::string_view hint = {});

// The closest candidate by edit distance (ties: the first), or "" if none is close enough to be a
// plausible typo of `word`.
std::string closest(std::string_view word, const std::vector<std::string>& candidates);
size_t edit_distance(std::string_view a, std::string_view b);

// validate() with the origin its messages start with.
void validate(const RunConfig& cfg, std::string_view origin);

// parse_run_config() without the final validate(): lets tests round-trip values that are well
// typed but out of range.
RunConfig parse_unvalidated(const std::string& toml_text, const std::vector<std::string>& overrides,
                            const std::string& origin);

}  // namespace sy::config_schema
