#ifndef CNNVIZ_CORE_VERSION_H_
#define CNNVIZ_CORE_VERSION_H_

namespace cnnviz {

constexpr const char* kVersion = "0.1.0";

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_VERSION_H_
