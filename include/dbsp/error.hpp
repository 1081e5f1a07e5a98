// Errors: the library reports bad input and failed calls by throwing dbsp::Error; it never exits.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace dbsp {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}
}  // namespace detail

// Throws dbsp::Error with the message parts joined when `condition` is false.
template <class... Parts>
void require(bool condition, Parts&&... message_parts) {
  if (!condition) throw Error(detail::concat(std::forward<Parts>(message_parts)...));
}

template <class... Parts>
[[noreturn]] void fail(Parts&&... message_parts) {
  throw Error(detail::concat(std::forward<Parts>(message_parts)...));
}

}  // namespace dbsp
