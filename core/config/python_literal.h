// The literal subset of Python that Colossal-AI's legacy config files are written in, read as
// JSON values: `NAME = expression` statements whose expressions are numbers, strings, True /
// False / None, lists, tuples, {..} and dict(key=value) dicts, + - * / ** arithmetic on numbers,
// dotted names (AMP_TYPE.TORCH) and calls of anything else (TensorShardStrategy()). Names and
// calls cannot be evaluated here: they become {"$name": "AMP_TYPE.TORCH"} and
// {"$call": "TensorShardStrategy", "args": [...], "kwargs": {...}}. import lines are skipped.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace cr {

// The file's top-level assignments, in order, as one JSON object. cr::Error "source:line: what"
// for anything outside the subset (a statement that is not an assignment, a bad token, an
// unclosed bracket).
nlohmann::ordered_json parse_python_literals(const std::string& text, const std::string& source_name);

}  // namespace cr
