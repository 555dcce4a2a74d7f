#include "core/config/python_literal.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/base/error.h"

namespace cr {
namespace {

using Json = nlohmann::ordered_json;

class Parser {
 public:
  Parser(const std::string& text, std::string source) : text_(text), source_(std::move(source)) {}

  Json parse_file() {
    Json out = Json::object();
    for (;;) {
      skip_space(/*newlines=*/true);
      if (at_ >= text_.size()) return out;
      const size_t start = at_;
      const std::string name = identifier();
      if (name == "import" || name == "from") {
        while (at_ < text_.size() && text_[at_] != '\n') ++at_;
        continue;
      }
      if (name.empty()) error("expected `NAME = value`");
      skip_space(false);
      if (!take('=')) {
        at_ = start;
        error(fmt::format("`{}` is not an assignment (only `NAME = value` lines are read)", name));
      }
      out[name] = expression();
      if (take(',')) {
        // `x = a, b` (or a trailing comma) is a tuple.
        Json tuple = Json::array({out[name]});
        skip_space(false);
        while (at_ < text_.size() && text_[at_] != '\n') {
          tuple.push_back(expression());
          if (!take(',')) break;
          skip_space(false);
        }
        out[name] = tuple;
      }
      skip_space(false);
      if (at_ < text_.size() && text_[at_] != '\n') error("expected the end of the line");
    }
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    int line = 1;
    for (size_t i = 0; i < at_ && i < text_.size(); ++i) line += text_[i] == '\n';
    fail("{}:{}: {}", source_, line, what);
  }

  // Spaces and comments; newlines too inside brackets (depth_ > 0) or when asked.
  void skip_space(bool newlines) {
    while (at_ < text_.size()) {
      const char c = text_[at_];
      if (c == '#') {
        while (at_ < text_.size() && text_[at_] != '\n') ++at_;
      } else if (c == ' ' || c == '\t' || c == '\r') {
        ++at_;
      } else if (c == '\\' && at_ + 1 < text_.size() && text_[at_ + 1] == '\n') {
        at_ += 2;  // a continued line
      } else if (c == '\n' && (newlines || depth_ > 0)) {
        ++at_;
      } else {
        return;
      }
    }
  }

  bool take(char c) {
    skip_space(false);
    if (at_ < text_.size() && text_[at_] == c) {
      ++at_;
      return true;
    }
    return false;
  }

  void expect(char c) {
    if (!take(c)) error(fmt::format("expected `{}`", c));
  }

  std::string identifier() {
    skip_space(false);
    const size_t start = at_;
    while (at_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[at_])) || text_[at_] == '_')) {
      if (at_ == start && std::isdigit(static_cast<unsigned char>(text_[at_]))) break;
      ++at_;
    }
    return text_.substr(start, at_ - start);
  }

  Json expression() {
    Json value = term();
    for (;;) {
      if (take('+')) {
        value = arithmetic(value, term(), '+');
      } else if (peek('-')) {
        ++at_;
        value = arithmetic(value, term(), '-');
      } else {
        return value;
      }
    }
  }

  bool peek(char c) {
    skip_space(false);
    return at_ < text_.size() && text_[at_] == c;
  }

  Json term() {
    Json value = power();
    for (;;) {
      skip_space(false);
      if (text_.compare(at_, 2, "**") == 0) return value;  // handled by power()
      if (take('*')) {
        value = arithmetic(value, power(), '*');
      } else if (take('/')) {
        value = arithmetic(value, power(), '/');
      } else {
        return value;
      }
    }
  }

  Json power() {
    Json base = unary();
    skip_space(false);
    if (text_.compare(at_, 2, "**") != 0) return base;
    at_ += 2;
    return arithmetic(base, power(), '^');
  }

  Json unary() {
    if (take('-')) return arithmetic(Json(0), unary(), '-');
    if (take('+')) return unary();
    return atom();
  }

  Json arithmetic(const Json& a, const Json& b, char op) {
    if (!a.is_number() || !b.is_number()) error("arithmetic on something that is not a number");
    const double x = a.get<double>(), y = b.get<double>();
    double r = 0;
    switch (op) {
      case '+': r = x + y; break;
      case '-': r = x - y; break;
      case '*': r = x * y; break;
      case '/': r = x / y; break;
      default: r = std::pow(x, y);
    }
    const bool integral = a.is_number_integer() && b.is_number_integer() && op != '/' && std::abs(r) < 9e15;
    return integral ? Json(static_cast<int64_t>(r)) : Json(r);
  }

  Json atom() {
    skip_space(false);
    if (at_ >= text_.size()) error("expected a value");
    const char c = text_[at_];
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') return number();
    if (c == '\'' || c == '"') return string();
    if (c == '[' || c == '(') return sequence();
    if (c == '{') return braces();
    std::string name = identifier();
    if (name.empty()) error(fmt::format("unexpected `{}`", c));
    if (name == "True") return true;
    if (name == "False") return false;
    if (name == "None") return nullptr;
    while (take('.')) {
      const std::string part = identifier();
      if (part.empty()) error("expected a name after `.`");
      name += "." + part;
    }
    if (!take('(')) return Json{{"$name", name}};
    ++depth_;
    Json args = Json::array(), kwargs = Json::object();
    while (!take(')')) {
      const size_t start = at_;
      const std::string key = identifier();
      skip_space(false);
      if (!key.empty() && at_ < text_.size() && text_[at_] == '=' && text_.compare(at_, 2, "==") != 0) {
        ++at_;
        kwargs[key] = expression();
      } else {
        at_ = start;
        args.push_back(expression());
      }
      if (!take(',')) {
        expect(')');
        break;
      }
    }
    --depth_;
    if (name == "dict") {
      if (!args.empty()) error("dict(...) with positional arguments");
      return kwargs;
    }
    return Json{{"$call", name}, {"args", args}, {"kwargs", kwargs}};
  }

  Json number() {
    const size_t start = at_;
    bool real = false;
    while (at_ < text_.size()) {
      const char c = text_[at_];
      if (std::isdigit(static_cast<unsigned char>(c)) || c == '_') {
        ++at_;
      } else if (c == '.' || c == 'e' || c == 'E') {
        real = true;
        ++at_;
        if ((c == 'e' || c == 'E') && at_ < text_.size() && (text_[at_] == '-' || text_[at_] == '+')) ++at_;
      } else {
        break;
      }
    }
    std::string digits = text_.substr(start, at_ - start);
    digits.erase(std::remove(digits.begin(), digits.end(), '_'), digits.end());
    try {
      size_t used = 0;
      const Json value = real ? Json(std::stod(digits, &used)) : Json(static_cast<int64_t>(std::stoll(digits, &used)));
      if (used != digits.size()) throw std::invalid_argument(digits);
      return value;
    } catch (const std::exception&) {
      error(fmt::format("`{}` is not a number", digits));
    }
  }

  Json string() {
    const char quote = text_[at_++];
    std::string out;
    while (at_ < text_.size() && text_[at_] != quote) {
      if (text_[at_] == '\n') error("unterminated string");
      if (text_[at_] == '\\' && at_ + 1 < text_.size()) ++at_;
      out += text_[at_++];
    }
    if (at_ >= text_.size()) error("unterminated string");
    ++at_;
    return out;
  }

  Json sequence() {
    const char close = text_[at_++] == '[' ? ']' : ')';
    ++depth_;
    Json items = Json::array();
    bool comma = false;
    while (!take(close)) {
      items.push_back(expression());
      comma = take(',');
      if (!comma) {
        expect(close);
        break;
      }
    }
    --depth_;
    // (x) is x; (x,) and (x, y) are tuples.
    if (close == ')' && items.size() == 1 && !comma) return items[0];
    return items;
  }

  Json braces() {
    ++at_;
    ++depth_;
    Json out = Json::object();
    while (!take('}')) {
      const Json key = expression();
      if (!key.is_string()) error("dictionary keys must be strings");
      expect(':');
      out[key.get<std::string>()] = expression();
      if (!take(',')) {
        expect('}');
        break;
      }
    }
    --depth_;
    return out;
  }

  const std::string& text_;
  std::string source_;
  size_t at_ = 0;
  int depth_ = 0;  // open brackets: newlines inside them continue the statement
};

}  // namespace

nlohmann::ordered_json parse_python_literals(const std::string& text, const std::string& source_name) {
  return Parser(text, source_name).parse_file();
}

}  // namespace cr
