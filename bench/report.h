// How a benchmark reports: aligned text tables for people, one JSON object for
// programs. With --json the tables and progress go to stderr and the last
// stdout line is the result object; without it the tables go to stdout.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace dsinf::bench {

class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header) : header_(std::move(header)) {}
  // Short rows are padded with empty cells.
  void add_row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  // Header, a rule, the rows; columns of numbers right-aligned, the others left-aligned.
  std::string render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

class Reporter {
 public:
  explicit Reporter(bool json) : json_(json) {}
  bool json() const { return json_; }
  // Where text meant for people goes: stdout, or stderr under --json.
  std::ostream& text() const;
  // One progress line on stderr, flushed at once.
  void progress(const std::string& line) const;
  // Under --json: `result` as one line on stdout (and nothing else on stdout).
  void result(const nlohmann::ordered_json& result) const;

 private:
  bool json_;
};

// `value` rounded to `digits` significant digits (a positive value stays positive).
double round_significant(double value, int digits);
// "1.234" style, for GB/s and seconds per GB in tables.
std::string format_fixed(double value, int decimals);

}  // namespace dsinf::bench
