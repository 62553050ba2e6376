return function(core, lunet, internals) return {} end
