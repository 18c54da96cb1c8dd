#ifndef CNNVIZ_VERSION_H_
#define CNNVIZ_VERSION_H_

namespace cnnviz {

constexpr const char* kVersion = "0.1.0";

}  // namespace cnnviz

#endif  // CNNVIZ_VERSION_H_
