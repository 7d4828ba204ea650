package main

import redsyncredis "github.com/go-redsync/redsync/v4/redis"

type redsyncPool = redsyncredis.Pool
