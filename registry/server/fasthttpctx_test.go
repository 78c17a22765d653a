package server

import "github.com/valyala/fasthttp"

// fasthttpCtx drives Server.Handler without a network connection.
type fasthttpCtx struct {
	rc fasthttp.RequestCtx
}

func (c *fasthttpCtx) reset(method, uri string) {
	c.rc.Request.Reset()
	c.rc.Response.Reset()
	c.rc.Request.Header.SetMethod(method)
	c.rc.Request.SetRequestURI(uri)
}

func (c *fasthttpCtx) ctx() *fasthttp.RequestCtx {
	return &c.rc
}
