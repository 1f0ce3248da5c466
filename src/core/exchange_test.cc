#include "core/exchange.h"

#include <gtest/gtest.h>

#include <vector>

namespace sy {
namespace {

// The group of one rank: its block to itself, at the offsets given.
TEST(LocalExchangeTest, CopiesTheBlockToItself) {
  LocalExchange x;
  EXPECT_EQ(x.rank(), 0);
  EXPECT_EQ(x.size(), 1);
  const std::vector<int64_t> counts = {3, 4};
  std::vector<int64_t> got(2);
  x.alltoall(counts.data(), got.data(), 2);
  EXPECT_EQ(got, counts);
  const std::vector<float> send = {9, 1, 2, 3};
  std::vector<float> recv(5, -1);
  const int64_t sc = 3, so = 1, rc = 3, ro = 2;
  x.alltoallv(send.data(), &sc, &so, recv.data(), &rc, &ro);
  EXPECT_EQ(recv, (std::vector<float>{-1, -1, 1, 2, 3}));
  const std::vector<int64_t> isend = {9, 1, 2, 3};
  std::vector<int64_t> irecv(5, -1);
  x.alltoallv(isend.data(), &sc, &so, irecv.data(), &rc, &ro);
  EXPECT_EQ(irecv, (std::vector<int64_t>{-1, -1, 1, 2, 3}));
}

}  // namespace
}  // namespace sy
