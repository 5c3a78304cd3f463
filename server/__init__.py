"""saywell.server"""
